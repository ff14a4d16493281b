"""Put SLM's docker compose stack on one EC2 host, show it, or take it all down again.

python -m infra.ec2 up --domain chat.example.com --email you@example.com
python -m infra.ec2 status
python -m infra.ec2 down
Add --dry-run to see what would change. AWS credentials and region come from the usual places
(AWS_PROFILE, ~/.aws/config, environment), or --profile / --region.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from infra.ec2.resources import Deployment, Options

REPO = Path(__file__).resolve().parents[2]


def default_repo_url() -> str:
    """This checkout's origin when the new host can clone it anonymously (https), else ""."""
    try:
        url = subprocess.run(
            ["git", "-C", str(REPO), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return url if url.startswith("https://") else ""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default="slm", help="deployment name: prefix and tag of every resource")
    common.add_argument("--region", default=None, help="AWS region (default: your AWS configuration's)")
    common.add_argument("--profile", default=None, help="AWS profile (default: AWS_PROFILE or 'default')")
    common.add_argument(
        "--key-dir", type=Path, default=Path.home() / ".ssh", help="where the private key is saved"
    )
    common.add_argument(
        "--dry-run", action="store_true", help="look up and print what would change; change nothing"
    )

    parser = argparse.ArgumentParser(prog="python -m infra.ec2", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", parents=[common], help="create (or find) every resource and start the stack"
    )
    up.add_argument(
        "--domain", default="", help="host name users open; its DNS A record must point at the IP"
    )
    up.add_argument(
        "--email", default="", help="Let's Encrypt account e-mail (empty: self-signed certificate)"
    )
    up.add_argument(
        "--repo-url", default=None, help="https URL the host clones (default: this checkout's origin)"
    )
    up.add_argument("--branch", default="main", help="branch the host checks out")
    up.add_argument(
        "--instance-type",
        default="t3.micro",
        help="EC2 instance type: t3.micro or t2.micro (1 GiB, free tier) run the stack (~750 MB measured "
        "under load, 2 GB swap as a safety net); t3.small / t3.medium leave room for more streams",
    )
    up.add_argument("--volume-gib", type=int, default=30, help="root volume size in GiB")
    up.add_argument(
        "--ssh-cidr", default="0.0.0.0/0", help="addresses allowed on port 22, e.g. 203.0.113.7/32"
    )
    commands.add_parser("status", parents=[common], help="show the deployment's resources")
    commands.add_parser("down", parents=[common], help="remove every resource of the deployment")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    options = Options(name=args.name, key_dir=args.key_dir)
    if args.command == "up":
        repo_url = default_repo_url() if args.repo_url is None else args.repo_url
        options.domain, options.email, options.repo_url, options.branch = (
            args.domain,
            args.email,
            repo_url,
            args.branch,
        )
        options.instance_type, options.volume_gib, options.ssh_cidr = (
            args.instance_type,
            args.volume_gib,
            args.ssh_cidr,
        )
        if args.email and not args.domain:
            build_parser().error(
                "--email needs --domain: Let's Encrypt issues certificates for host names only"
            )
    session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    if not session.region_name:
        sys.exit("no AWS region: pass --region or set AWS_REGION")
    prefix = "[dry run] " if args.dry_run else ""
    deployment = Deployment(options, session, dry_run=args.dry_run, say=lambda line: print(f"{prefix}{line}"))
    print(f"{prefix}{args.command} deployment {args.name!r} in {session.region_name}")
    try:
        if args.command == "up":
            report(deployment.up(), options, args.dry_run)
        elif args.command == "down":
            deployment.down()
            print(f"{prefix}done: nothing tagged slm:deployment={args.name} is left")
        else:
            for kind, value in deployment.status().items():
                print(f"  {kind:15} {value or '-'}")
    except NoCredentialsError:
        sys.exit("no AWS credentials: run `aws configure`, or set AWS_PROFILE or AWS_ACCESS_KEY_ID")
    except (ClientError, BotoCoreError) as error:
        sys.exit(f"AWS refused: {error}")


def report(result: dict, options: Options, dry_run: bool) -> None:
    if dry_run:
        return
    print(f"\nhost {result['instance_id']} at {result['public_ip']}")
    print(f"  ssh -i {options.key_path} ec2-user@{result['public_ip']}")
    print(
        "  first boot installs Docker and builds the images (10-15 minutes): tail -f /var/log/slm-bootstrap.log"
    )
    if not options.repo_url:
        print(
            "  no repository URL: copy this checkout to the host's /opt/slm, then run docker compose up -d --build"
        )
    print(f"  then open https://{result['domain']}")
    if options.domain:
        print(
            f"  point {options.domain}'s DNS A record at {result['public_ip']} so Let's Encrypt can issue the certificate"
        )
