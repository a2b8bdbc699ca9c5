#!/usr/bin/python3
"""Runs the integration tests against one stapler binary.

usage: run.py --stapler PATH [--sanitized] [-k PATTERN] [test_module ...]
"""
import argparse
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stapler", required=True)
    ap.add_argument("--sanitized", action="store_true")
    ap.add_argument("-k", dest="pattern", action="append", default=[])
    ap.add_argument("modules", nargs="*")
    args = ap.parse_args()
    os.environ["STAPLER_BIN"] = os.path.abspath(args.stapler)
    if args.sanitized:
        os.environ["STAPLER_SANITIZED"] = "1"
    sys.path.insert(0, HERE)
    loader = unittest.TestLoader()
    if args.pattern:
        loader.testNamePatterns = ["*%s*" % p for p in args.pattern]
    if args.modules:
        suite = unittest.TestSuite(loader.loadTestsFromName(m) for m in args.modules)
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    result = unittest.TextTestRunner(verbosity=2, buffer=False).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
