"""What each PromQL expression reads, for tests/pipeline_dashboard.rs: parses every expression
of the JSON list on stdin with promql-parser (the Rust PromQL parser of GreptimeDB, through its
Python binding) and prints, per expression, the series it selects (metric name and the labels
it matches on) and the labels each aggregation groups by, with the metrics under it. A parse
error is printed as {"error": ...} for that expression."""
import json
import sys

import promql_parser as p


def walk(e, out, under):
    kind = type(e).__name__
    if kind == "VectorSelector":
        labels = [m.name for m in e.matchers.matchers]
        out["selectors"].append({"name": e.name, "labels": labels})
        under.append(e.name)
    elif kind == "MatrixSelector":
        walk(e.vector_selector, out, under)
    elif kind == "AggregateExpr":
        inner = []
        walk(e.expr, out, inner)
        if e.modifier is not None:
            out["groupings"].append({"labels": list(e.modifier.labels), "metrics": inner, "without": str(e.modifier.type).endswith("Without")})
        under.extend(inner)
    elif kind == "BinaryExpr":
        walk(e.lhs, out, under)
        walk(e.rhs, out, under)
    elif kind == "Call":
        for a in e.args:
            walk(a, out, under)
    elif kind in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
        walk(e.expr, out, under)
    elif kind in ("NumberLiteral", "StringLiteral"):
        pass
    else:
        raise ValueError("unexpected PromQL node " + kind)


result = []
for expr in json.load(sys.stdin):
    try:
        out = {"selectors": [], "groupings": []}
        walk(p.parse(expr), out, [])
        result.append(out)
    except Exception as e:  # a parse error is the test's to report
        result.append({"error": str(e)})
print(json.dumps(result))
