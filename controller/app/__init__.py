"""The applications: the daemon (`berth run`), the CLI and the HTTP endpoint. Top layer:
imports the loop and the gateways; nothing imports it."""
