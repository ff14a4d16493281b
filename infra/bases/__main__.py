"""Resolve SLM's base images and print them for the shell (see infra/bases/__init__.py).

eval "$(python -m infra.bases)"                 # official images where they can be pulled, else stand-ins
eval "$(python -m infra.bases --mode standin)"  # always the Debian-built stand-ins
docker compose up -d --build                    # builds with them (and with BUILD_CA_CERT when printed)
python -m infra.bases --sam-template .aws-sam/bases/template.json   # a template that sam build builds with them:
sam build --template-file .aws-sam/bases/template.json --base-dir .
"""

import argparse
import shlex
import sys
from pathlib import Path

from infra.bases import build_ca_cert, resolve, sam_template


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.bases", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode",
        choices=["auto", "official", "standin"],
        default="auto",
        help="auto: each official image where it is here or can be pulled, else its stand-in",
    )
    parser.add_argument(
        "--sam-template",
        type=Path,
        default=None,
        help="also write this copy of template.yaml, whose functions build with these bases (DockerBuildArgs)",
    )
    args = parser.parse_args()
    images = resolve(args.mode, log=sys.stderr)
    ca = build_ca_cert()
    if args.sam_template:
        print(f"infra.bases: wrote {sam_template(images, args.sam_template, ca)}", file=sys.stderr)
    for name, image in sorted(images.items()) + ([("BUILD_CA_CERT", ca)] if ca else []):
        print(f"export {name}={shlex.quote(image)}")


if __name__ == "__main__":
    main()
