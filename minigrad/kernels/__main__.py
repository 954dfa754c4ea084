"""``python -m minigrad.kernels``: every registered kernel, what it replaces and when."""
import inspect

from . import is_enabled, registered


def main():
    print(f"kernels are {'on' if is_enabled() else 'off (MINIGRAD_KERNELS=off)'}\n")
    for ov in registered():
        doc = inspect.getdoc(ov.kernel) or ""
        where = inspect.getsource(ov.when).strip().splitlines()
        print(f"{ov.qualname}  <-  {ov.kernel.__module__}.{ov.kernel.__name__}")
        print(f"    {doc.splitlines()[0] if doc else ''}")
        print(f"    applies where: {' '.join(line.strip() for line in where[1:]) or where[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
