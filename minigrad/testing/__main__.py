"""``python -m minigrad.testing --list``: the op registry and what each entry checks."""
import argparse
import sys


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minigrad.testing",
                                description="minigrad's op registry: which ops are checked "
                                            "how, and which Functions each entry reaches.")
    p.add_argument("--list", action="store_true", help="print the coverage table")
    args = p.parse_args(argv)
    if not args.list:
        p.print_help()
        return 0
    from .registry import coverage_table
    print(coverage_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
