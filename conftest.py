# The suite's pytest plugin (options, matrix, results). `pytest` alone runs tests/; `pytest perf`
# runs the suite.
pytest_plugins = ["perf.plugin"]
