#!/bin/sh
# Make the secrets deploy/docker-compose.yml mounts, with fresh random values, once:
#   sh make-secrets.sh            # from deploy/; files that exist are kept
# Nothing guessable is shipped: the stack does not start until these files exist.
#   secrets/station_tokens.json   wall-board tokens (view only) for wards 4B and 4C
#   secrets/signing_keys.<service>.json  signing keys, each service given only what it needs
#   secrets/gateway_tokens        bearer tokens of the FHIR front door, one a line
#   secrets/grafana_admin_password
# People sign in to the station as themselves: add them with
#   docker compose run --rm station users add anna.smith --name "Anna Smith" --role bedside_nurse --ward 4B
set -eu
cd "$(dirname "$0")"
mkdir -p secrets
umask 077

random() {  # 32 URL-safe characters from the kernel's random source
    LC_ALL=C tr -dc 'A-Za-z0-9_-' </dev/urandom | head -c 32
}

if [ ! -f secrets/station_tokens.json ]; then
    printf '{"%s": {"station": "4B wall board", "wards": ["4B"]},\n "%s": {"station": "4C wall board", "wards": ["4C"]}}\n' \
        "$(random)" "$(random)" > secrets/station_tokens.json
    echo "made secrets/station_tokens.json"
fi
if [ ! -f secrets/signing_keys.worker.json ]; then
    worker=$(random); station=$(random); admin=$(random); gateway=$(random)
    key() { printf '"%s-1": {"service": "%s", "secret": "%s"}' "$1" "$1" "$2"; }
    # The worker signs alerts, ward.state and what it forwards; it verifies stations and admin tools.
    printf '{%s, %s, %s}\n' "$(key worker "$worker")" "$(key station "$station")" "$(key admin "$admin")" \
        > secrets/signing_keys.worker.json
    # The station signs acknowledgements and settings; it verifies the worker's alerts.
    printf '{%s, %s}\n' "$(key station "$station")" "$(key worker "$worker")" > secrets/signing_keys.station.json
    # The front doors hold only their own key.
    printf '{%s}\n' "$(key gateway "$gateway")" > secrets/signing_keys.gateway.json
    # Admin tools (settings changes from a script): their own key and the worker's, to read alerts.
    printf '{%s, %s}\n' "$(key admin "$admin")" "$(key worker "$worker")" > secrets/signing_keys.admin.json
    echo "made secrets/signing_keys.{worker,station,gateway,admin}.json"
fi
if [ ! -f secrets/gateway_tokens ]; then
    printf '# FHIR front door bearer tokens, one a line (give one to each gateway)\n%s\n' "$(random)" \
        > secrets/gateway_tokens
    echo "made secrets/gateway_tokens"
fi
if [ ! -f secrets/grafana_admin_password ]; then
    random > secrets/grafana_admin_password
    echo "made secrets/grafana_admin_password"
fi
