"""Fuzz targets for every decoder, a seeded mutation engine, and the atheris driver.

Shared by the bounded runs in the suite (tests/fuzz/test_fuzz.py) and the long runs of
tests/fuzz/run.py. A target takes bytes and either returns (the input was handled: decoded, or
refused with one of the documented errors) or raises (a finding: any other exception, or an
assertion about the outcome, such as the pure and compiled twins disagreeing).
"""
