"""Reads an HTCondor configuration with HTCondor's own configuration reader (the
`htcondor2` Python bindings, given the file as CONDOR_CONFIG) and prints the macros
named on the command line as JSON: each macro's value after expansion, and, where
that value is a ClassAd expression, what it evaluates to.

usage: python3 condor_config.py FILE NAME...
"""
import json
import os
import sys

os.environ["CONDOR_CONFIG"] = sys.argv[1]
import classad2  # noqa: E402
import htcondor2  # noqa: E402

out = {}
for name in sys.argv[2:]:
    value = htcondor2.param.get(name)
    evaluated = None
    if value is not None:
        try:
            evaluated = classad2.ExprTree(value).eval()
            if not isinstance(evaluated, (str, int, float, bool)):
                evaluated = repr(evaluated)
        except Exception as e:  # a value that is no ClassAd expression
            evaluated = "not a ClassAd expression: %s" % e
    out[name] = {"value": value, "classad": evaluated}
print(json.dumps(out))
