"""The EC2 resources of one SLM deployment, each found by its tag before anything is created.

Every step can be re-run: a second `up` finds what the first one made (and RunInstances carries a
ClientToken, so even a retried call after a time-out launches one instance), and `down` removes
exactly what carries the deployment's tag. With dry_run, look-ups still run but nothing changes.
"""

import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAG = "slm:deployment"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
USER_DATA = Path(__file__).with_name("user-data.sh")


@dataclass
class Options:
    name: str = "slm"
    instance_type: str = "t3.micro"  # 1 GiB: the compose stack is sized for it
    domain: str = ""  # empty: the Elastic IP's address (self-signed certificate)
    email: str = ""
    repo_url: str = ""
    branch: str = "main"
    key_dir: Path = Path.home() / ".ssh"
    ssh_cidr: str = "0.0.0.0/0"
    volume_gib: int = 30

    @property
    def key_path(self) -> Path:
        return self.key_dir / f"{self.name}-key.pem"


def render_user_data(options: Options, domain: str) -> str:
    """user-data.sh with each @NAME@ replaced by a shell-quoted value."""
    values = {"REPO_URL": options.repo_url, "BRANCH": options.branch, "DOMAIN": domain}
    values["CERTBOT_EMAIL"] = options.email
    text = USER_DATA.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", shlex.quote(value))
    return text


class Deployment:
    def __init__(self, options: Options, session: Any, dry_run: bool = False, say: Callable = print):
        self.options, self.dry_run, self.say = options, dry_run, say
        self.ec2 = session.client("ec2")
        self.ssm = session.client("ssm")

    # ---- look-ups ------------------------------------------------------------------------------
    def _mine(self) -> list[dict]:
        return [{"Name": f"tag:{TAG}", "Values": [self.options.name]}]

    def _tags(self, resource_type: str, kind: str) -> list[dict]:
        tags = [
            {"Key": "Name", "Value": f"{self.options.name}-{kind}"},
            {"Key": TAG, "Value": self.options.name},
        ]
        return [{"ResourceType": resource_type, "Tags": tags}]

    def find_key_pair(self) -> dict | None:
        return next(iter(self.ec2.describe_key_pairs(Filters=self._mine())["KeyPairs"]), None)

    def find_security_group(self) -> dict | None:
        return next(iter(self.ec2.describe_security_groups(Filters=self._mine())["SecurityGroups"]), None)

    def find_address(self) -> dict | None:
        return next(iter(self.ec2.describe_addresses(Filters=self._mine())["Addresses"]), None)

    def find_instance(self) -> dict | None:
        filters = [*self._mine(), {"Name": "instance-state-name", "Values": LIVE_STATES}]
        reservations = self.ec2.describe_instances(Filters=filters)["Reservations"]
        return next((i for r in reservations for i in r["Instances"]), None)

    # ---- up --------------------------------------------------------------------------------------
    def ensure_key_pair(self) -> str:
        name, path = f"{self.options.name}-key", self.options.key_path
        if found := self.find_key_pair():
            note = "" if path.exists() else f" (its private key is not at {path}: ssh needs it)"
            self.say(f"key pair {found['KeyName']}: exists{note}")
            return str(found["KeyName"])
        if self.dry_run:
            self.say(f"key pair {name}: would create, private key to {path} (mode 0600)")
            return name
        created = self.ec2.create_key_pair(KeyName=name, TagSpecifications=self._tags("key-pair", "key"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(created["KeyMaterial"])
        os.chmod(path, 0o600)
        self.say(f"key pair {name}: created, private key saved to {path} (mode 0600)")
        return name

    def ensure_security_group(self) -> str:
        if found := self.find_security_group():
            self.say(f"security group {found['GroupId']}: exists")
            return str(found["GroupId"])
        vpcs = self.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise SystemExit("no default VPC in this region: create one with `aws ec2 create-default-vpc`")
        if self.dry_run:
            self.say(
                f"security group {self.options.name}-web: would create in {vpcs[0]['VpcId']}, open on 22/80/443"
            )
            return "(new security group)"
        group = self.ec2.create_security_group(
            GroupName=f"{self.options.name}-web",
            Description="SLM host: SSH, HTTP, HTTPS",
            VpcId=vpcs[0]["VpcId"],
            TagSpecifications=self._tags("security-group", "web"),
        )["GroupId"]
        anywhere = {"IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
        permissions = [
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": self.options.ssh_cidr}],
            }
        ]
        permissions += [{"IpProtocol": "tcp", "FromPort": p, "ToPort": p, **anywhere} for p in (80, 443)]
        self.ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=permissions)
        self.say(f"security group {group}: created, open on 22 ({self.options.ssh_cidr}), 80 and 443")
        return str(group)

    def ensure_address(self) -> dict:
        if found := self.find_address():
            self.say(f"elastic IP {found['PublicIp']}: exists")
            return found
        if self.dry_run:
            self.say("elastic IP: would allocate")
            return {"PublicIp": "(new address)", "AllocationId": "(new)"}
        address = self.ec2.allocate_address(Domain="vpc", TagSpecifications=self._tags("elastic-ip", "ip"))
        self.say(f"elastic IP {address['PublicIp']}: allocated")
        return dict(address)

    def ensure_instance(self, key_name: str, group_id: str, domain: str) -> dict:
        if found := self.find_instance():
            self.say(f"instance {found['InstanceId']}: exists ({found['State']['Name']})")
            return found
        image = self.ssm.get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
        if self.dry_run:
            self.say(f"instance: would launch {self.options.instance_type} from {image} (Amazon Linux 2023)")
            return {"InstanceId": "(new instance)"}
        volume = {"VolumeSize": self.options.volume_gib, "VolumeType": "gp3", "Encrypted": True}
        instance = self.ec2.run_instances(
            ImageId=image,
            InstanceType=self.options.instance_type,
            KeyName=key_name,
            SecurityGroupIds=[group_id],
            MinCount=1,
            MaxCount=1,
            UserData=render_user_data(self.options, domain),
            ClientToken=f"{self.options.name}-{group_id}"[:64],
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {**volume, "DeleteOnTermination": True}}],
            TagSpecifications=self._tags("instance", "host") + self._tags("volume", "disk"),
        )["Instances"][0]
        self.say(f"instance {instance['InstanceId']}: launched; waiting until it runs (about a minute)")
        self.ec2.get_waiter("instance_running").wait(InstanceIds=[instance["InstanceId"]])
        return dict(instance)

    def up(self) -> dict:
        """Create (or find) the key pair, security group, Elastic IP and instance; associate the IP."""
        key_name = self.ensure_key_pair()
        group_id = self.ensure_security_group()
        address = self.ensure_address()
        domain = self.options.domain or address["PublicIp"]
        instance = self.ensure_instance(key_name, group_id, domain)
        if address.get("InstanceId") == instance["InstanceId"]:
            self.say(f"elastic IP {address['PublicIp']}: already on {instance['InstanceId']}")
        elif self.dry_run:
            self.say(f"elastic IP {address['PublicIp']}: would associate with {instance['InstanceId']}")
        else:
            self.ec2.associate_address(
                AllocationId=address["AllocationId"], InstanceId=instance["InstanceId"]
            )
            self.say(f"elastic IP {address['PublicIp']}: associated with {instance['InstanceId']}")
        return {"instance_id": instance["InstanceId"], "public_ip": address["PublicIp"], "domain": domain}

    # ---- down ------------------------------------------------------------------------------------
    def down(self) -> None:
        """Remove everything tagged with this deployment's name, and the local private key."""
        verb = "would " if self.dry_run else ""
        if instance := self.find_instance():
            self.say(f"instance {instance['InstanceId']}: {verb}terminate")
            if not self.dry_run:
                self.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
                self.say("waiting until it is terminated (a minute or two)")
                self.ec2.get_waiter("instance_terminated").wait(InstanceIds=[instance["InstanceId"]])
        if address := self.find_address():
            self.say(f"elastic IP {address['PublicIp']}: {verb}release")
            if not self.dry_run:
                if "AssociationId" in address:
                    self.ec2.disassociate_address(AssociationId=address["AssociationId"])
                self.ec2.release_address(AllocationId=address["AllocationId"])
        if group := self.find_security_group():
            self.say(f"security group {group['GroupId']}: {verb}delete")
            if not self.dry_run:
                self._delete_security_group(group["GroupId"])
        if key := self.find_key_pair():
            self.say(f"key pair {key['KeyName']}: {verb}delete, with {self.options.key_path}")
            if not self.dry_run:
                self.ec2.delete_key_pair(KeyName=key["KeyName"])
                self.options.key_path.unlink(missing_ok=True)

    def _delete_security_group(self, group_id: str, attempts: int = 12) -> None:
        """The terminated instance's network interface can hold the group for a little while."""
        for attempt in range(attempts):
            try:
                self.ec2.delete_security_group(GroupId=group_id)
                return
            except self.ec2.exceptions.ClientError as error:
                if error.response["Error"]["Code"] != "DependencyViolation" or attempt == attempts - 1:
                    raise
                time.sleep(10)

    # ---- status ----------------------------------------------------------------------------------
    def status(self) -> dict:
        instance, address = self.find_instance(), self.find_address()
        return {
            "key pair": (self.find_key_pair() or {}).get("KeyName"),
            "security group": (self.find_security_group() or {}).get("GroupId"),
            "elastic IP": (address or {}).get("PublicIp"),
            "instance": instance and f"{instance['InstanceId']} ({instance['State']['Name']})",
        }
