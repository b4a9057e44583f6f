"""Generate Python code (messages, gRPC stubs, mypy stubs) from proto/ into the source tree.

Generated modules land beside the runtime (govmesh/<service>/v1/) because protobuf derives the
Python module path from the proto package; they are ignored by git and never hand-edited."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"


def main() -> int:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    code: int = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"-I{include}",
            f"--python_out={ROOT}",
            f"--grpc_python_out={ROOT}",
            f"--mypy_out={ROOT}",
            f"--mypy_grpc_out={ROOT}",
            *files,
        ]
    )
    if code != 0:
        print("protoc failed", file=sys.stderr)
        return code
    for package_dir in {(ROOT / f).parent for f in files}:
        for directory in (package_dir, package_dir.parent):
            (directory / "__init__.py").touch()
    print(f"generated Python code for {len(files)} proto files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
