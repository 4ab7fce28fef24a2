"""Write the JSON schemas of custom resources from their CRD manifests (to update k8s/schemas/).

    python k8s/schemas/vendor.py OUT_DIR CRD.yaml [CRD.yaml ...]

For each served version of each CRD it writes ``<group>_<version>_<kind>.json``: the version's
``openAPIV3Schema`` as published by the operator's release (see k8s/schemas/README.md for the sources and
versions). The test of the manifests (tests/streams/test_k8s_manifests.py) reads them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def main(out: Path, sources: list[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for source in sources:
        for crd in yaml.safe_load_all(source.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            kind = spec["names"]["kind"]
            for version in spec["versions"]:
                if not version.get("served"):
                    continue
                schema = version["schema"]["openAPIV3Schema"]
                name = f"{spec['group']}_{version['name']}_{kind.lower()}.json"
                (out / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                print(f"{source.name}: {name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
