"""Base images for building SLM where the official ones cannot be pulled, and a proxy's CA for the builds.

Every Dockerfile takes its bases as build ARGs whose defaults are the official images (python, node, nginx,
the Lambda Web Adapter) and docker-compose.yml names its two pulled images through variables (postgres,
certbot). Where a registry is out of reach, `resolve` builds a stand-in for each missing image from Debian's
packages, under a local name of its own (slm-local/...; never an official image's name): a Debian bookworm
root made by debootstrap and imported, then one folder of infra/bases per image. A stand-in is rebuilt only
when its folder changes. `build_ca_cert` finds the CA certificates the host trusts beyond the public ones
(a TLS-intercepting proxy's), which the builds take as the build ARG BUILD_CA_CERT in their download stages
only: no final image carries it.

    python -m infra.bases            # prints `export NAME=image` lines for the shell: eval "$(...)"

`sam build` takes build arguments from the template only: `sam_template` writes a copy of template.yaml
whose functions carry the chosen bases (and the CA) as DockerBuildArgs.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DOCKERFILES = [
    REPO / "functions/auth/Dockerfile",
    REPO / "functions/conversations/Dockerfile",
    REPO / "functions/chat/Dockerfile",
    REPO / "infra/nginx/Dockerfile",
]
COMPOSE = REPO / "docker-compose.yml"
DEBIAN = "slm-local/debian:bookworm"
STANDINS = {  # build ARG or compose variable -> (folder of infra/bases, local name)
    "PYTHON_IMAGE": ("python", "slm-local/python:3.11-bookworm"),
    "NODE_IMAGE": ("node", "slm-local/node:22-bookworm"),
    "NGINX_IMAGE": ("nginx", "slm-local/nginx:bookworm"),
    "POSTGRES_IMAGE": ("postgres", "slm-local/postgres:15-bookworm"),
    "CERTBOT_IMAGE": ("certbot", "slm-local/certbot:bookworm"),
    "LAMBDA_ADAPTER_IMAGE": ("lambda-adapter", "slm-local/lambda-adapter:stand-in"),
}
RECIPE_LABEL = "org.slm.recipe"
# where a host keeps the CA certificates its administrator added (Debian and Ubuntu; Fedora and RHEL)
LOCAL_CA_FOLDERS = [Path("/usr/local/share/ca-certificates"), Path("/etc/pki/ca-trust/source/anchors")]


def official_images() -> dict[str, str]:
    """Each base's name -> its official image: the Dockerfiles' ARG defaults and compose's ${NAME:-default}."""
    images: dict[str, str] = {}
    for dockerfile in DOCKERFILES:
        images |= dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", dockerfile.read_text(), flags=re.M))
    images |= dict(re.findall(r"\$\{(\w+_IMAGE):-([^}]+)\}", COMPOSE.read_text()))
    return images


def build_ca_cert() -> str:
    """The PEM certificates the host trusts beyond the public CAs (SLM_BUILD_CA_FILE, else the local CA
    folders of its trust store), or "" when there are none."""
    named = os.environ.get("SLM_BUILD_CA_FILE")
    files = [Path(named)] if named else []
    for folder in [] if named else LOCAL_CA_FOLDERS:
        if folder.is_dir():
            files += sorted(p for p in folder.rglob("*") if p.suffix in (".crt", ".pem") and p.is_file())
    pems = [f.read_text().strip() for f in files]
    return "\n".join(pem for pem in pems if "-----BEGIN CERTIFICATE-----" in pem)


def run(command: list[str], log: TextIO, **kwargs) -> None:
    """Run a build step with its output in the log (never on stdout, which the CLI keeps for its result)."""
    log.flush()
    subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, **kwargs)


def image_label(image: str) -> str | None:
    """The image's recipe label ("" when it has none), or None when there is no such image here."""
    found = subprocess.run(
        ["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}', image],
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() if found.returncode == 0 else None


def can_pull(image: str) -> bool:
    if image_label(image) is not None:
        return True
    try:
        pulled = subprocess.run(["docker", "pull", "-q", image], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return False
    return pulled.returncode == 0


def recipe(folder: Path, *inputs: str) -> str:
    digest = hashlib.sha256("\n".join(inputs).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(folder)} {path.stat().st_mode & 0o111}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def debian_image(log: TextIO) -> str:
    """slm-local/debian:bookworm: debootstrap's minimal bookworm, updated, imported (needs root)."""
    mirror = os.environ.get("SLM_DEBIAN_MIRROR", "http://deb.debian.org/debian").rstrip("/")
    label = hashlib.sha256(f"minbase bookworm {mirror} 1".encode()).hexdigest()[:16]
    if image_label(DEBIAN) == label:
        return DEBIAN
    print(f"infra.bases: building {DEBIAN} with debootstrap from {mirror}", file=log)
    with tempfile.TemporaryDirectory(prefix="slm-debian-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        run(["debootstrap", "--variant=minbase", "bookworm", str(root), mirror], log)
        (root / "etc/apt/sources.list").write_text(
            f"deb {mirror} bookworm main\ndeb {mirror} bookworm-updates main\n"
            f"deb {mirror}-security bookworm-security main\n"
        )
        # as Debian's slim images: no documentation, and no package cache or lists left in any layer
        (root / "etc/dpkg/dpkg.cfg.d/slim").write_text(
            "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
            "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\n"
        )
        (root / "etc/apt/apt.conf.d/docker-clean").write_text(
            'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n'
            'APT::Install-Recommends "false";\n'
        )
        update = "apt-get update && apt-get -y upgrade && apt-get clean && rm -rf /var/lib/apt/lists/*"
        run(
            ["chroot", str(root), "sh", "-c", update],
            log,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"},
        )
        # what Docker provides at run time (resolv.conf, hosts, hostname) and what debootstrap left
        purge = 'rm -rf "$0"/etc/resolv.conf "$0"/etc/hostname "$0"/usr/share/man/* "$0"/usr/share/locale/* "$0"/var/log/*'
        run(["sh", "-c", purge, str(root)], log)
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        changes = ["--change", f"LABEL {RECIPE_LABEL}={label}", "--change", 'CMD ["bash"]']
        run(["docker", "import", *changes, "-", DEBIAN], log, stdin=tar.stdout)
        if tar.wait() != 0:
            raise RuntimeError("tar of the Debian root failed")
    return DEBIAN


def standin(arg: str, build_args: dict[str, str], log: TextIO) -> str:
    """Build (or reuse) the stand-in for the base `arg` names, FROM the images in build_args; the proxy's
    CA goes to those whose Dockerfile downloads with it."""
    name, tag = STANDINS[arg]
    folder = HERE / name
    if "ARG BUILD_CA_CERT" not in (folder / "Dockerfile").read_text():
        build_args = {k: v for k, v in build_args.items() if k != "BUILD_CA_CERT"}
    bases = [f"{k}={v}@{image_label(v) or ''}" for k, v in sorted(build_args.items()) if k.endswith("_IMAGE")]
    label = recipe(folder, *bases)
    if image_label(tag) == label:
        return tag
    print(f"infra.bases: building the stand-in {tag}", file=log)
    flags = [f"--build-arg={k}={v}" for k, v in build_args.items()]
    run(["docker", "build", "--label", f"{RECIPE_LABEL}={label}", "-t", tag, *flags, str(folder)], log)
    return tag


def resolve(mode: str = "auto", log: TextIO = sys.stderr) -> dict[str, str]:
    """Each base's name -> the image to build with: the official one where it is here or can be pulled
    (mode "auto"; always with "official"), else (or always, with "standin") its stand-in. Build output
    goes to `log`."""
    images, chosen = official_images(), {}
    for arg, official in images.items():
        if mode == "official" or (mode == "auto" and can_pull(official)):
            chosen[arg] = official
    missing = [arg for arg in images if arg not in chosen]
    if missing:
        ca = build_ca_cert()
        common = {"DEBIAN_IMAGE": debian_image(log)} | ({"BUILD_CA_CERT": ca} if ca else {})
        for arg in sorted(missing, key=lambda name: name != "PYTHON_IMAGE"):  # node's stand-in needs python
            extra = {"PYTHON_IMAGE": chosen["PYTHON_IMAGE"]} if arg == "NODE_IMAGE" else {}
            chosen[arg] = standin(arg, common | extra, log)
    return chosen


def sam_template(images: dict[str, str], out: Path, ca: str = "") -> Path:
    """A copy of template.yaml (as JSON, which SAM reads too) in which each function builds with the images
    that are not the official defaults, and with the CA, as its Metadata.DockerBuildArgs; build it with
    `sam build --template-file OUT --base-dir .` from the repository."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((REPO / "template.yaml").read_text())
    official = official_images()
    for resource in template["Resources"].values():
        metadata = resource.get("Metadata", {})
        if "Dockerfile" not in metadata:
            continue
        dockerfile = (REPO / metadata["DockerContext"] / metadata["Dockerfile"]).read_text()
        args = {
            arg: image
            for arg, image in images.items()
            if f"ARG {arg}=" in dockerfile and image != official[arg]
        }
        if ca:
            args["BUILD_CA_CERT"] = ca
        if args:
            metadata["DockerBuildArgs"] = args
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(template, indent=1) + "\n")
    return out
