# kapacitor-pagertree %pre: the accounts, as the .deb's postinst makes them
# (contrib/packaging/debian/postinst says why user kapacitor may be made too).
if ! getent group kapacitor >/dev/null; then
    if id kapacitor >/dev/null 2>&1; then
        groupadd --system kapacitor
    else
        useradd --system --user-group --no-create-home \
            --home-dir /var/lib/kapacitor --shell /bin/false kapacitor
    fi
fi
if ! id kapacitor-pagertree >/dev/null 2>&1; then
    useradd --system --gid kapacitor --no-create-home \
        --home-dir /var/lib/kapacitor-pagertree --shell /usr/sbin/nologin \
        --comment "kapacitor-pagertree UDF agent" kapacitor-pagertree
fi
exit 0
