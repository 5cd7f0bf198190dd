# kapacitor-pagertree %preun: on erase (not upgrade), show what the outbox
# still holds, then stop and disable the agent.
if [ "$1" -eq 0 ]; then
    if [ -f /var/lib/kapacitor-pagertree/outbox.db ]; then
        echo "kapacitor-pagertree: undelivered pages live in /var/lib/kapacitor-pagertree (the outbox):" >&2
        runuser -u kapacitor-pagertree -- /usr/bin/kapacitor-pagertree outbox list \
            --config /etc/kapacitor-pagertree.toml >&2 || :
    fi
    systemctl --no-reload disable --now kapacitor-pagertree.service >/dev/null 2>&1 || :
fi
exit 0
