"""Run the SAM CLI with `--docker-network host` meaning the host network, and
with every `--env-vars` value reaching the function.

Usage: <python of the SAM CLI venv> scripts/sam_host_network.py ARGS...
takes the same ARGS as `sam`, for example `local invoke --docker-network host`.

In SAM CLI 1.170.0, `--docker-network host` only makes SAM skip connecting
the container to a network (samcli/local/docker/container.py). docker-py then
sends NetworkMode "default", so the container lands on the engine's default
bridge and cannot reach services on the host's 127.0.0.1.

This launcher patches five points before it starts the unchanged SAM CLI:

* A container created for `--docker-network host` gets `network_mode="host"`
  and no published ports: docker-py rejects ports in host mode, and Docker
  would discard them.
* Host mode publishes no ports, so the Runtime Interface Emulator (RIE) must
  listen on the host port that SAM picked and sends invokes to. Its Runtime
  API, 127.0.0.1:9001 by default, also moves to a free port, so that two
  function containers on the host network do not both claim 9001.
* The output of a host-network container is read with the Docker logs API
  (`docker logs --follow`) instead of the attach API. With podman 4.3.1
  (Debian 12) as the Docker API, the attach stream sometimes stopped after
  its first line, so the SAM log missed the function's output and the RIE's
  REPORT line in about 1 of 3 invokes. The logs API, which podman serves
  from the container's log file, returned every line in 8 of 8 invokes.
* SAM CLI 1.170.0 (samcli/local/lambdafn/env_vars.py) applies an
  `--env-vars` value only to a variable that the template declares for the
  function and drops the others. The launcher passes those others too, so a
  local run can set variables that a deployed function does not have, such
  as AWS_ENDPOINT_URL_DYNAMODB and AWS_ENDPOINT_URL_S3 for local emulators.
* `sam local invoke` and `sam local start-api` call STS GetCallerIdentity on
  AWS (samcli/commands/local/cli_common/invoke_context.py) to fill in
  AWS::AccountId. The launcher skips that call, so no request leaves the
  machine and AWS::AccountId keeps SAM's default, 123456789012. Without
  internet access the call took about 7 s of every invoke before it failed.

Other `--docker-network` values and runs without the option keep SAM's
network and log handling. The `--env-vars` and STS changes apply to every run.
"""

import sys

import docker.models.containers
from samcli.cli.main import cli
from samcli.commands.local.cli_common.invoke_context import InvokeContext
from samcli.local.docker.container import Container
from samcli.local.docker.utils import find_free_port
from samcli.local.lambdafn.env_vars import EnvironmentVariables

HOST_NETWORK = "host"
RIE_PATH = "/var/rapid/aws-lambda-rie"

# RIE's Runtime API port is taken from this range. It lies above SAM's range
# for the RIE invoke port (5000-9000) and below Linux's default ephemeral port
# range (net.ipv4.ip_local_port_range = 32768 60999), so it cannot collide
# with the invoke port and, under that default, not with outgoing connections.
RUNTIME_API_PORT_RANGE = (20000, 30000)

_original_container_create = Container.create
_original_wait_for_logs = Container.wait_for_logs
_original_collection_create = docker.models.containers.ContainerCollection.create
_original_resolve_environment = EnvironmentVariables.resolve


def _add_rie_addresses(entrypoint, invoke_address, runtime_api_address):
    """Return `entrypoint` with RIE options that set both listen addresses.

    The options go right after the RIE path, ahead of the arguments that a
    debug entrypoint passes on to the runtime. An entrypoint that does not
    start the RIE is returned unchanged.
    """
    if not entrypoint or entrypoint[0] != RIE_PATH:
        return entrypoint
    return [
        entrypoint[0],
        "--runtime-interface-emulator-address",
        invoke_address,
        "--runtime-api-address",
        runtime_api_address,
        *entrypoint[1:],
    ]


def create_container_on_host_network(self, context):
    """Create the container in the host network namespace for network "host"."""
    if self.network_id == HOST_NETWORK:
        interface = self._container_host_interface
        runtime_api_port = find_free_port(interface, *RUNTIME_API_PORT_RANGE)
        self._entrypoint = _add_rie_addresses(
            self._entrypoint,
            f"{interface}:{self.rapid_port_host}",
            f"{interface}:{runtime_api_port}",
        )
        self._container_opts = {**(self._container_opts or {}), "network_mode": HOST_NETWORK}
    return _original_container_create(self, context)


def create_without_ports_in_host_mode(self, image, command=None, **kwargs):
    """Drop published ports for a host-network container, as Docker does."""
    if kwargs.get("network_mode") == HOST_NETWORK:
        kwargs.pop("ports", None)
    return _original_collection_create(self, image, command, **kwargs)


def wait_for_logs_with_logs_api(self, stdout=None, stderr=None, event=None):
    """Copy a host-network container's output with the logs API until it exits.

    The logs API does not say which stream a chunk came from, so all output
    goes to `stderr`, or to `stdout` when no `stderr` is given. SAM passes its
    stderr for both when it runs a function.
    """
    if self.network_id != HOST_NETWORK:
        return _original_wait_for_logs(self, stdout, stderr, event)
    if not stdout and not stderr:
        return None
    real_container = self.docker_client.containers.get(self.id)
    chunks = real_container.logs(stream=True, follow=True, stdout=True, stderr=True)
    if stderr:
        output = ((None, chunk) for chunk in chunks)
    else:
        output = ((chunk, None) for chunk in chunks)
    self._write_container_output(output, stdout=stdout, stderr=stderr, event=event)
    return None


def resolve_environment_with_undeclared_overrides(self):
    """Resolve the function's environment, plus `--env-vars` values of undeclared variables."""
    result = _original_resolve_environment(self)
    for name, value in self.override_values.items():
        if name not in self.variables:
            result[name] = self._stringify_value(value)
    return result


def keep_default_account_id(self):
    """Leave AWS::AccountId at SAM's default instead of asking STS."""


def main():
    Container.create = create_container_on_host_network
    docker.models.containers.ContainerCollection.create = create_without_ports_in_host_mode
    Container.wait_for_logs = wait_for_logs_with_logs_api
    EnvironmentVariables.resolve = resolve_environment_with_undeclared_overrides
    InvokeContext._add_account_id_to_global = keep_default_account_id
    sys.argv[0] = "sam"
    sys.exit(cli())


if __name__ == "__main__":
    main()
