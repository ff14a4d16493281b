"""template.yaml: cfn-lint, then the SAM translator's CloudFormation output, checked resource by resource."""

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from tests.infra.helpers import FUNCTIONS, REPO, load_template, require_tool, template_routes

ORIGIN = "https://chat.example.com"
HTTP_API_ROUTES = {
    ("GET", "/api/health"): "AuthFunction",
    ("POST", "/api/auth/register"): "AuthFunction",
    ("POST", "/api/auth/login"): "AuthFunction",
    ("GET", "/api/auth/me"): "AuthFunction",
    ("DELETE", "/api/auth/me"): "AuthFunction",
    ("POST", "/api/auth/password"): "AuthFunction",
    ("POST", "/api/auth/logout"): "AuthFunction",
    ("GET", "/api/auth/keys"): "AuthFunction",
    ("POST", "/api/auth/keys"): "AuthFunction",
    ("DELETE", "/api/auth/keys/{key_id}"): "AuthFunction",
    ("GET", "/api/conversations"): "ConversationsFunction",
    ("POST", "/api/conversations"): "ConversationsFunction",
    ("GET", "/api/conversations/{conversation_id}"): "ConversationsFunction",
    ("PATCH", "/api/conversations/{conversation_id}"): "ConversationsFunction",
    ("DELETE", "/api/conversations/{conversation_id}"): "ConversationsFunction",
    ("GET", "/api/conversations/{conversation_id}/export"): "ConversationsFunction",
    ("POST", "/api/conversations/{conversation_id}/stop"): "ConversationsFunction",
}
CHAT_ROUTES = {
    ("POST", "/api/chat"),
    ("GET", "/api/chat/{conversation_id}/events"),
    ("GET", "/api/model"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_name}"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/api/health"),
}


class NoManagedPolicies:
    """The template names managed policies by ARN, so the translator never needs IAM's list of them."""

    def load(self) -> dict[str, str]:
        raise AssertionError("the template should not need IAM's managed policy list")


def translate(parameters: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(load_template())
    for logical_id in FUNCTIONS:  # what `sam build` writes once it has built each image
        template["Resources"][logical_id]["Properties"]["ImageUri"] = f"{logical_id.lower()}:v1"
    pseudo = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    return dict(transform(template, {**pseudo, **parameters}, NoManagedPolicies()))


@pytest.fixture
def cfn(monkeypatch) -> dict[str, Any]:
    return translate({"FrontendOrigin": ORIGIN}, monkeypatch)


def resources_of_type(cfn: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in cfn["Resources"].items() if r["Type"] == kind}


def test_cfn_lint_passes_on_the_template() -> None:
    cfn_lint = require_tool("cfn-lint", "pip install -r requirements-dev.txt")
    result = subprocess.run([cfn_lint, "template.yaml"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_passes_on_the_translated_template(cfn, tmp_path: Path) -> None:
    (tmp_path / "translated.json").write_text(json.dumps(cfn))
    cfn_lint = require_tool("cfn-lint", "pip install -r requirements-dev.txt")
    result = subprocess.run([cfn_lint, str(tmp_path / "translated.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_function_url_streams_responses(cfn) -> None:
    (url,) = resources_of_type(cfn, "AWS::Lambda::Url").values()
    assert url["Properties"]["InvokeMode"] == "RESPONSE_STREAM"
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": "ChatFunction"}
    assert url["Properties"]["AuthType"] == "NONE"  # the app checks the bearer JWT itself


def test_chat_runs_behind_lambda_web_adapter(cfn) -> None:
    chat = cfn["Resources"]["ChatFunction"]["Properties"]
    variables = chat["Environment"]["Variables"]
    assert variables["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert variables["AWS_LWA_READINESS_CHECK_PATH"] == "/api/health"
    assert variables["AWS_LWA_PORT"] == "8080"
    assert chat["PackageType"] == "Image"


def test_http_api_routes_are_exactly_auth_and_conversations(cfn) -> None:
    (api,) = resources_of_type(cfn, "AWS::ApiGatewayV2::Api").values()
    routes = {}
    for path, methods in api["Properties"]["Body"]["paths"].items():
        for method, operation in methods.items():
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            routes[(method.upper(), path)] = next(f for f in FUNCTIONS if "${" + f + ".Arn}" in uri)
    assert routes == HTTP_API_ROUTES


def test_route_table_is_the_design_api() -> None:
    names = {"AuthFunction": "auth", "ConversationsFunction": "conversations"}
    expected = {route: names[f] for route, f in HTTP_API_ROUTES.items()}
    expected |= {route: "chat" for route in CHAT_ROUTES if route not in expected}
    assert template_routes() == expected


def test_cors_allows_only_the_frontend_origin(cfn) -> None:
    (api,) = resources_of_type(cfn, "AWS::ApiGatewayV2::Api").values()
    # The translator fills in the parameter's value; CloudFormation picks the branch at deploy time.
    cors = api["Properties"]["Body"]["x-amazon-apigateway-cors"]
    hosted = {"Fn::Sub": "https://${FrontendDistribution.DomainName}"}
    assert cors["allowOrigins"] == [{"Fn::If": ["HostFrontend", hosted, ORIGIN]}]
    (url,) = resources_of_type(cfn, "AWS::Lambda::Url").values()
    origin = url["Properties"]["Cors"]["AllowOrigins"]
    assert origin == [
        {
            "Fn::If": [
                "HostFrontend",
                {"Fn::Sub": "https://${FrontendDistribution.DomainName}"},
                {"Ref": "FrontendOrigin"},
            ]
        }
    ]
    assert cfn["Conditions"]["HostFrontend"] == {"Fn::Equals": [{"Ref": "FrontendOrigin"}, ""]}
    # the Function URL answers chat's preflights itself (the app's CORS never sees them): the OpenAI
    # JavaScript SDK's own headers on /v1 must pass there, as they do under the app (test_abuse -k cors)
    sdk = {"authorization", "content-type", "x-stainless-os", "x-stainless-lang", "x-stainless-retry-count"}
    sdk |= {"x-stainless-arch", "x-stainless-package-version", "x-stainless-runtime", "x-stainless-timeout"}
    assert sdk | {"last-event-id"} <= set(url["Properties"]["Cors"]["AllowHeaders"])


def test_functions_read_their_secrets_from_secrets_manager(cfn) -> None:
    database_secret = {
        "Fn::If": ["CreateDatabase", {"Ref": "DatabaseUrlSecret"}, {"Ref": "ExistingDatabaseUrlSecretArn"}]
    }
    for logical_id in FUNCTIONS:
        function = cfn["Resources"][logical_id]["Properties"]
        variables = function["Environment"]["Variables"]
        # the secret IDs only when UseSecretsManager is "true" (the default; "false" for sam local invoke)
        assert variables["SLM_JWT_SECRET_SECRET_ID"] == {"Fn::If": ["UseSecrets", {"Ref": "JwtSecret"}, ""]}
        assert variables["SLM_DATABASE_URL_SECRET_ID"] == {"Fn::If": ["UseSecrets", database_secret, ""]}
        assert variables["SLM_JWT_SECRET"] == ""  # no secret inline: the URL is the images' SQLite default
        assert variables["SLM_DATABASE_URL"] == "sqlite+aiosqlite:////tmp/slm_chat.db"
        assert variables["SLM_ENV"] == "production"
        assert function["Role"] == {"Fn::GetAtt": ["FunctionRole", "Arn"]}
    (policy,) = cfn["Resources"]["FunctionRole"]["Properties"]["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == [{"Ref": "JwtSecret"}, database_secret]
    for secret in ("JwtSecret", "DatabaseUrlSecret", "DatabasePasswordSecret"):
        assert cfn["Resources"][secret]["Type"] == "AWS::SecretsManager::Secret"


def test_database_url_secret_is_built_from_the_rds_instance(cfn) -> None:
    url = cfn["Resources"]["DatabaseUrlSecret"]["Properties"]["SecretString"]["Fn::Sub"]
    assert url.startswith("postgresql+psycopg://slm:{{resolve:secretsmanager:${DatabasePasswordSecret}")
    assert "${Database.Endpoint.Address}:${Database.Endpoint.Port}/slm" in url
    database = cfn["Resources"]["Database"]
    assert (
        database["Properties"]["Engine"] == "postgres"
        and database["Properties"]["PubliclyAccessible"] is False
    )


def test_database_and_its_network_exist_only_without_an_existing_database(cfn) -> None:
    assert cfn["Conditions"]["CreateDatabase"] == {
        "Fn::Equals": [{"Ref": "ExistingDatabaseUrlSecretArn"}, ""]
    }
    for kind in ("AWS::RDS::DBInstance", "AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::VPCEndpoint"):
        for name, resource in resources_of_type(cfn, kind).items():
            assert resource.get("Condition") == "CreateDatabase", name
    for logical_id in FUNCTIONS:
        assert cfn["Resources"][logical_id]["Properties"]["VpcConfig"]["Fn::If"][0] == "CreateDatabase"


def test_every_function_is_bounded(cfn) -> None:
    for logical_id in FUNCTIONS:
        function = cfn["Resources"][logical_id]["Properties"]
        assert 0 < function["Timeout"] <= 120
        assert "MemorySize" in function
        assert function["ReservedConcurrentExecutions"]["Fn::If"][0].startswith("Limit")
    for logical_id in ("AuthFunction", "ConversationsFunction"):  # API Gateway gives up after 30 s
        assert cfn["Resources"][logical_id]["Properties"]["Timeout"] <= 30
    (stage,) = resources_of_type(cfn, "AWS::ApiGatewayV2::Stage").values()
    login = stage["Properties"]["RouteSettings"]["POST /api/auth/login"]
    assert login["ThrottlingRateLimit"] < stage["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"]


def test_images_are_built_from_each_function_dockerfile() -> None:
    for logical_id, name in FUNCTIONS.items():
        resource = load_template()["Resources"][logical_id]
        assert resource["Properties"]["PackageType"] == "Image"
        assert resource["Metadata"]["Dockerfile"] == f"functions/{name}/Dockerfile"
        assert resource["Metadata"]["DockerContext"] == "."
        assert (REPO / resource["Metadata"]["Dockerfile"]).is_file()


def test_outputs_name_every_url(cfn) -> None:
    outputs = cfn["Outputs"]
    for name in ("HttpApiUrl", "ChatFunctionUrl", "ChatBaseUrl", "FrontendUrl", "FrontendConfigJson"):
        assert name in outputs
    assert outputs["ChatFunctionUrl"]["Value"] == {"Fn::GetAtt": ["ChatFunctionUrl", "FunctionUrl"]}
    config = outputs["FrontendConfigJson"]["Value"]["Fn::Sub"][0]
    assert all(key in config for key in ('"authBaseUrl"', '"conversationsBaseUrl"', '"chatBaseUrl"'))


def test_frontend_hosting_is_private_bucket_behind_cloudfront(monkeypatch) -> None:
    cfn = translate({}, monkeypatch)  # no FrontendOrigin: the stack hosts the frontend
    bucket = cfn["Resources"]["FrontendBucket"]
    assert bucket["Condition"] == "HostFrontend"
    assert all(bucket["Properties"]["PublicAccessBlockConfiguration"].values())
    (statement,) = cfn["Resources"]["FrontendBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "cloudfront.amazonaws.com"}


def test_sam_local_can_set_every_variable_of_the_local_env_file() -> None:
    """`sam local invoke --env-vars` passes only the variables a function declares: local-env.json's key and
    database reach every function, and the database URL default is the images' own."""
    declared = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    local = json.loads((REPO / "infra/events/local-env.json").read_text())["Parameters"]
    assert set(local) <= set(declared)
    assert local["SLM_DATABASE_URL"].startswith("postgresql+psycopg://")
    for name in FUNCTIONS.values():
        dockerfile = (REPO / "functions" / name / "Dockerfile").read_text()
        assert f"SLM_DATABASE_URL={declared['SLM_DATABASE_URL']}" in dockerfile, name
