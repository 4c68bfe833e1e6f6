"""Check that every route of template.yaml requires authorisation.

The template is expanded the way a deployment expands it: the
AWS::LanguageExtensions transform (SAM CLI's local implementation) with the
given parameters, then the AWS::Serverless transform (samtranslator). Each
route of the resulting HTTP API must then carry the expected authorizer: the
IAM authorizer with the default parameters, the JWT authorizer with
ApiAuthorizer=JWT. Every function must get the user id claim only in JWT
mode. Prints one line per mode and exits 1 when a route is open, uses another
authorizer, or a function has the wrong claim.

Run with the Python of scripts/install-tools.sh (it has aws-sam-cli).
"""

import logging
import os
import sys

from samcli.lib.cfn_language_extensions.api import process_template
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

# Parameters of each mode, keyed by the authorizer every route must then require.
MODES = {
    "AWS_IAM": {"ApiAuthorizer": "AWS_IAM"},
    "JwtAuthorizer": {
        "ApiAuthorizer": "JWT",
        "JwtIssuer": "https://issuer.example.com",
        "JwtAudience": ["shop-client"],
        "JwtUserIdClaim": "shop_user_id",
    },
}

# Placeholder code locations: the transform checks their form only.
PLACEHOLDER_CODE = "s3://placeholder-bucket/placeholder.zip"


class OfflinePolicyLoader:
    """Managed policy names for the transform, without calling IAM."""

    def load(self):
        return {}


def expand(template_path, parameters):
    with open(template_path, encoding="utf-8") as handle:
        template = yaml_parse(handle.read())
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            properties["CodeUri"] = PLACEHOLDER_CODE
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = PLACEHOLDER_CODE
    expanded = process_template(template, parameter_values=parameters)
    return transform(expanded, parameters, OfflinePolicyLoader())


def route_authorizers(output):
    """Yield (route, names of the security requirements) of every HTTP API route."""
    for logical_id, resource in output["Resources"].items():
        if resource["Type"] != "AWS::ApiGatewayV2::Api":
            continue
        for path, methods in resource["Properties"]["Body"]["paths"].items():
            for method, operation in methods.items():
                names = [name for requirement in operation.get("security", []) for name in requirement]
                yield f"{logical_id} {method.upper()} {path}", names


def deployed_value(value, parameters):
    """Resolve the Fn::If on UseJwtAuthorizer and parameter Refs in a value,
    as CloudFormation does at deployment."""
    if isinstance(value, dict) and "Fn::If" in value:
        condition, if_true, if_false = value["Fn::If"]
        if condition != "UseJwtAuthorizer":
            raise ValueError(f"unexpected condition {condition!r}")
        chosen = if_true if parameters["ApiAuthorizer"] == "JWT" else if_false
        return deployed_value(chosen, parameters)
    if isinstance(value, dict) and "Ref" in value:
        return parameters.get(value["Ref"], "")
    return value


def user_id_claims(output, parameters):
    """Yield (function, deployed USER_ID_CLAIM) of every Lambda function."""
    for logical_id, resource in output["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            yield logical_id, deployed_value(variables.get("USER_ID_CLAIM"), parameters)


def main():
    template_path = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    # The transform logs a warning per function about feature toggles it has no configuration for.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    failures = 0
    for expected, parameters in MODES.items():
        output = expand(template_path, parameters)
        routes = list(route_authorizers(output))
        wrong = [(route, names) for route, names in routes if names != [expected]]
        for route, names in wrong:
            print(f"api auth: {route} requires {names or 'nothing'}, expected {expected}", file=sys.stderr)
        failures += len(wrong)
        if not routes:
            print(f"api auth: no route found with {parameters}", file=sys.stderr)
            failures += 1
        print(f"api auth: {len(routes) - len(wrong)} of {len(routes)} routes require {expected} with ApiAuthorizer={parameters['ApiAuthorizer']}")

        # The user id claim applies only to JWT callers: IAM requests carry no claims.
        expected_claim = parameters.get("JwtUserIdClaim", "")
        for function, claim in user_id_claims(output, parameters):
            if claim != expected_claim:
                print(f"api auth: {function} has USER_ID_CLAIM {claim!r}, expected {expected_claim!r}", file=sys.stderr)
                failures += 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
