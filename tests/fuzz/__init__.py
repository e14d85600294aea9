"""The fuzz suite of issue 18: generators (generators.py), the forked case runner (runner.py),
the hypothesis tests and the regression corpus (test_fuzz.py, corpus/); bench/fuzz.py is the
standalone long run."""
