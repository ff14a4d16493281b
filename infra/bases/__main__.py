"""Resolve SLM's base images and print them for the shell (see infra/bases/__init__.py).

eval "$(python -m infra.bases)"                 # official images where they can be pulled, else stand-ins
eval "$(python -m infra.bases --mode standin)"  # always the Debian-built stand-ins
docker compose up -d --build                    # builds with them (and with BUILD_CA_CERT when printed)
"""

import argparse
import shlex
import sys

from infra.bases import build_ca_cert, resolve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.bases", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode",
        choices=["auto", "official", "standin"],
        default="auto",
        help="auto: each official image where it is here or can be pulled, else its stand-in",
    )
    args = parser.parse_args()
    images = resolve(args.mode, log=sys.stderr)
    ca = build_ca_cert()
    for name, image in sorted(images.items()) + ([("BUILD_CA_CERT", ca)] if ca else []):
        print(f"export {name}={shlex.quote(image)}")


if __name__ == "__main__":
    main()
