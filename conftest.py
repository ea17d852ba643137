# The suite's pytest plugin (options, matrix, results), and pytester for the suite's own tests.
# `pytest` alone runs tests/; `pytest perf` runs the suite.
pytest_plugins = ["perf.plugin", "pytester"]
