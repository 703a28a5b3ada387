# Helpers shared by the scripts that start servers (sourced, not run). Node rather than curl
# or python: Node is needed anyway, the others may be missing.

# A free TCP port on 127.0.0.1.
free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

# Waits up to ~20 s for URL to answer 2xx.
wait_for() {
    for _ in $(seq 200); do
        node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$1" \
            && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

# The load tool is one client address (127.0.0.1) with thousands of connections and
# thousands of messages a second: relays it measures get the per-client budgets and send
# rates lifted (export before starting them). What is measured is the relay's cost, not its
# refusals.
export_load_test_budgets() {
    export RELAY_RATE=1000000 RELAY_BURST=1000000 \
        RELAY_CLIENT_RATE=1000000 RELAY_CLIENT_BURST=1000000 \
        RELAY_REQUEST_RATE=1000000 RELAY_REQUEST_BURST=1000000 \
        RELAY_MAX_CONNECTIONS_PER_CLIENT=1000000 RELAY_NEW_ROOMS_PER_CLIENT=1000000 \
        RELAY_MAX_SOCKETS_PER_CLIENT=1000000 RELAY_ACCEPT_RATE=1000000
}
