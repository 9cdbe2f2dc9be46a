"""Validates docker-compose.yml against the Compose Specification's JSON schema and prints
what tests/compose.rs checks further, as JSON: each service's image, environment, health
check and depends_on conditions, and the provisioning files Grafana would read.

    python tests/compose/check.py docker-compose.yml
"""
import json
import pathlib
import sys

import jsonschema
import yaml

root = pathlib.Path(__file__).resolve().parents[2]
compose = yaml.safe_load(pathlib.Path(sys.argv[1]).read_text())
schema = json.loads((root / "tests/compose/compose-spec.json").read_text())
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
if errors:
    for e in errors:
        print(f"docker-compose.yml: {'/'.join(map(str, e.path)) or '(top)'}: {e.message}", file=sys.stderr)
    sys.exit(1)


def env(service):
    e = service.get("environment", {})
    if isinstance(e, list):
        e = dict(item.split("=", 1) for item in e)
    return {k: str(v) for k, v in e.items()}


provisioning = {}
for f in sorted((root / "dashboards/provisioning").rglob("*.yml")):
    provisioning[str(f.relative_to(root))] = yaml.safe_load(f.read_text())

print(json.dumps({
    "services": {
        name: {
            "image": s.get("image"),
            "build": s.get("build") is not None,
            "environment": env(s),
            "healthcheck": s.get("healthcheck"),
            "depends_on": s.get("depends_on", {}),
            "stop_signal": s.get("stop_signal"),
            "volumes": s.get("volumes", []),
        }
        for name, s in compose["services"].items()
    },
    "provisioning": provisioning,
}))
