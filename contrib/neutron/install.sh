#!/usr/bin/env bash
# Installs the midonet Neutron plugin into Debian 12's neutron-server (Zed)
# and configures Neutron to use it:
#   - the midonet_neutron package (with its entry points) into Python's
#     dist-packages;
#   - neutron.conf: core_plugin = ml2, service_plugins with midonet_l3 in place
#     of Neutron's own router plugin, dhcp_agent_notification = false (the
#     agents answer DHCP);
#   - plugins/ml2/ml2_conf.ini: the midonet type and mechanism drivers;
#   - server.conf.d/midonet.conf: where the cluster's API is and how to log in
#     (Debian's neutron-api reads that directory).
# Then restart neutron-api and neutron-rpc-server.
#
#   contrib/neutron/install.sh --api https://cluster:8181/midonet-api \
#       --credentials /var/lib/midonet/admin.credentials --ca-file /etc/midonet/ca.pem
#
# Options:
#   --api URL            the cluster's REST API (default http://127.0.0.1:8181/midonet-api)
#   --user NAME          cluster user the plugin logs in as (default admin)
#   --password PW        its password
#   --credentials FILE   read MIDONET_USER and MIDONET_PASSWORD from FILE (the
#                        file a fresh cluster writes) instead of --user/--password
#   --project NAME       tenant to log in to (default admin)
#   --ca-file FILE       CA of the API's certificate (https --api)
#   --etc-dir DIR        Neutron's configuration directory (default /etc/neutron)
#   --site-dir DIR       where to install the package (default Debian's
#                        /usr/lib/python3/dist-packages)
set -euo pipefail

api=http://127.0.0.1:8181/midonet-api
user=admin
password=
credentials=
project=admin
ca_file=
etc_dir=/etc/neutron
site_dir=/usr/lib/python3/dist-packages
src=$(cd "$(dirname "$0")" && pwd)

while [ $# -gt 0 ]; do
  case "$1" in
    --api) api=$2; shift 2 ;;
    --user) user=$2; shift 2 ;;
    --password) password=$2; shift 2 ;;
    --credentials) credentials=$2; shift 2 ;;
    --project) project=$2; shift 2 ;;
    --ca-file) ca_file=$2; shift 2 ;;
    --etc-dir) etc_dir=$2; shift 2 ;;
    --site-dir) site_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -n "$credentials" ]; then
  [ -r "$credentials" ] || { echo "install.sh: cannot read $credentials" >&2; exit 1; }
  user=$(sed -n 's/^MIDONET_USER=//p' "$credentials")
  password=$(sed -n 's/^MIDONET_PASSWORD=//p' "$credentials")
  p=$(sed -n 's/^MIDONET_TENANT=//p' "$credentials"); [ -n "$p" ] && project=$p
fi
if [ ! -f "$etc_dir/neutron.conf" ]; then
  echo "install.sh: no $etc_dir/neutron.conf: install Debian's neutron-server first (apt-get install neutron-server)" >&2
  exit 1
fi
if ! /usr/bin/python3 -c 'import neutron' 2>/dev/null; then
  echo "install.sh: Debian's python3-neutron is missing (apt-get install neutron-server)" >&2
  exit 1
fi

echo "installing midonet_neutron into $site_dir"
mkdir -p "$site_dir"
rm -rf "$site_dir/midonet_neutron" "$site_dir"/midonet_neutron-*.dist-info
cp -r "$src/midonet_neutron" "$src"/midonet_neutron-*.dist-info "$site_dir/"
find "$site_dir/midonet_neutron" -name '__pycache__' -prune -exec rm -rf {} +

# set_ini FILE SECTION KEY VALUE: sets one key, keeping the file's comments.
set_ini() {
  /usr/bin/python3 - "$@" <<'EOF'
import re, sys
path, section, key, value = sys.argv[1:5]
try:
    lines = open(path).read().rstrip('\n').split('\n')
except FileNotFoundError:
    lines = []
entry = '%s = %s' % (key, value)
out, current, done, seen = [], None, False, False


def place():
    # After the section's last non-blank line.
    i = len(out)
    while i > 0 and out[i - 1].strip() == '':
        i -= 1
    out.insert(i, entry)


for line in lines:
    m = re.match(r'\s*\[([^\]]+)\]', line)
    if m:
        if current == section and not done:
            place()
            done = True
        current = m.group(1)
        seen = seen or current == section
    elif current == section and re.match(r'\s*%s\s*=' % re.escape(key), line):
        if not done:
            out.append(entry)
            done = True
        continue
    out.append(line)
if not done:
    if not seen:
        if out and out[-1].strip():
            out.append('')
        out.append('[%s]' % section)
    place()
open(path, 'w').write('\n'.join(out).strip('\n') + '\n')
EOF
}

# get_ini FILE SECTION KEY: prints a key's value (empty if unset).
get_ini() {
  /usr/bin/python3 - "$@" <<'EOF'
import configparser, sys
c = configparser.ConfigParser(interpolation=None, strict=False)
c.read(sys.argv[1])
print(c.get(sys.argv[2], sys.argv[3], fallback=''))
EOF
}

conf=$etc_dir/neutron.conf
echo "configuring $conf: core_plugin = ml2, service_plugins with midonet_l3, no DHCP agent notification"
set_ini "$conf" DEFAULT core_plugin ml2
plugins=$(get_ini "$conf" DEFAULT service_plugins | tr ',' '\n' | sed 's/ //g' |
  { grep -v -x -e '' -e router -e midonet_l3 -e 'neutron.services.l3_router.l3_router_plugin.L3RouterPlugin' || true; } |
  paste -sd, -)
set_ini "$conf" DEFAULT service_plugins "midonet_l3${plugins:+,$plugins}"
# The agents answer DHCP: Neutron has no DHCP agent to schedule networks to.
set_ini "$conf" DEFAULT dhcp_agent_notification false

ml2=$etc_dir/plugins/ml2/ml2_conf.ini
mkdir -p "$(dirname "$ml2")"
echo "configuring $ml2: midonet type and mechanism drivers"
set_ini "$ml2" ml2 type_drivers midonet
set_ini "$ml2" ml2 tenant_network_types midonet
set_ini "$ml2" ml2 mechanism_drivers midonet
set_ini "$ml2" ml2 extension_drivers port_security

mkdir -p "$etc_dir/server.conf.d"
mid=$etc_dir/server.conf.d/midonet.conf
echo "writing $mid: the cluster at $api, user $user"
umask 077
cat > "$mid" <<EOF
# Written by midonet's contrib/neutron/install.sh: how the plugin reaches the
# cluster's Neutron endpoints.
[MIDONET]
midonet_uri = $api
username = $user
password = $password
project_id = $project
ca_file = $ca_file
EOF
if id neutron >/dev/null 2>&1; then chgrp neutron "$mid" && chmod 640 "$mid"; fi

echo "done: restart Neutron (systemctl restart neutron-api neutron-rpc-server)"
