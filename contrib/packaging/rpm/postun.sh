# kapacitor-pagertree %postun: an upgrade restarts an agent that runs (with
# the new binary); an erase keeps the data directory (rpm has no purge).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    systemctl try-restart kapacitor-pagertree.service >/dev/null 2>&1 || :
elif [ -d /var/lib/kapacitor-pagertree ]; then
    echo "kapacitor-pagertree: kept /var/lib/kapacitor-pagertree (the outbox with any undelivered" >&2
    echo "  pages, the alert state, the session marks); delete it by hand when no longer needed." >&2
fi
exit 0
