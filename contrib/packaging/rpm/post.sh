# kapacitor-pagertree %post: the data directory and the config's owner, as
# the .deb's postinst; the unit is enabled on a first install, not started
# (README, "Install": the endpoint URL is a placeholder until edited).
mkdir -p /var/lib/kapacitor-pagertree
chown kapacitor-pagertree:kapacitor /var/lib/kapacitor-pagertree
chmod 0750 /var/lib/kapacitor-pagertree
if [ -f /etc/kapacitor-pagertree.toml ]; then
    chown root:kapacitor /etc/kapacitor-pagertree.toml
    chmod 0640 /etc/kapacitor-pagertree.toml
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl enable kapacitor-pagertree.service >/dev/null 2>&1 || :
fi
exit 0
