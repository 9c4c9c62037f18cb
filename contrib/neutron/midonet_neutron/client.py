"""A client of the midonet cluster's Neutron endpoints.

It discovers the endpoints from the API root (the Application resource's
"neutron" URI, then the Neutron resource's collection and template URIs),
sends bare Neutron JSON with MidoNet's vendor media types, and
authenticates with X-Auth-Token: a configured token, or one from
MidoNet's login (POST <api>/login with Basic credentials), obtained again
once when the cluster answers 401.
"""

import base64
import json
import ssl
import threading
import urllib.error
import urllib.request

APP_TYPE = 'application/vnd.org.midonet.Application-v5+json'
NEUTRON_TYPE = 'application/vnd.org.midonet.neutron.Neutron-v3+json'

# collection -> (root key, template key, vendor name of one, of many)
COLLECTIONS = {
    'networks': ('networks', 'network_template', 'Network', 'Networks'),
    'subnets': ('subnets', 'subnet_template', 'Subnet', 'Subnets'),
    'ports': ('ports', 'port_template', 'Port', 'Ports'),
    'routers': ('routers', 'router_template', 'Router', 'Routers'),
    'floating_ips': ('floating_ips', 'floating_ip_template',
                     'FloatingIp', 'FloatingIps'),
    'security_groups': ('security_groups', 'security_group_template',
                        'SecurityGroup', 'SecurityGroups'),
    'security_group_rules': ('security_group_rules',
                             'security_group_rule_template',
                             'SecurityGroupRule', 'SecurityGroupRules'),
}


def vendor(name):
    return 'application/vnd.org.midonet.neutron.%s-v1+json' % name


class ClusterError(Exception):
    """The cluster refused or failed a call."""

    def __init__(self, method, url, status, message):
        self.method, self.url, self.status = method, url, status
        self.message = message
        super().__init__('%s %s: %s %s' % (method, url, status, message))


class Client(object):

    def __init__(self, uri, username='', password='', project_id='',
                 token='', ca_file='', timeout=30):
        self.uri = uri.rstrip('/')
        self.username, self.password = username, password
        self.project_id = project_id
        self.token = token
        self.timeout = timeout
        self.ssl = ssl.create_default_context(cafile=ca_file or None)
        self._root = None
        self._lock = threading.Lock()

    def _open(self, method, url, body=None, ctype=None, accept=None,
              auth=True):
        data = None
        if body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if ctype:
            req.add_header('Content-Type', ctype)
        if accept:
            req.add_header('Accept', accept)
        if auth and self.token:
            req.add_header('X-Auth-Token', self.token)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,
                                        context=self.ssl) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def _login(self):
        cred = base64.b64encode(
            ('%s:%s' % (self.username, self.password)).encode()).decode()
        req = urllib.request.Request(self.uri + '/login', data=b'',
                                     method='POST')
        req.add_header('Authorization', 'Basic ' + cred)
        if self.project_id:
            req.add_header('X-Auth-Project', self.project_id)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,
                                        context=self.ssl) as resp:
                body = json.loads(resp.read() or b'{}')
        except urllib.error.HTTPError as e:
            raise ClusterError('POST', self.uri + '/login', e.code,
                               _message(e.read()))
        self.token = body.get('key', '')

    def _call(self, method, url, body=None, ctype=None, accept=None):
        with self._lock:
            if not self.token and self.username:
                self._login()
        status, _, raw = self._open(method, url, body, ctype, accept)
        if status == 401 and self.username:
            with self._lock:
                self._login()
            status, _, raw = self._open(method, url, body, ctype, accept)
        if status >= 400:
            raise ClusterError(method, url, status, _message(raw))
        return json.loads(raw) if raw else None

    def _discover(self):
        if self._root is None:
            app = self._call('GET', self.uri, accept=APP_TYPE)
            if not app or 'neutron' not in app:
                raise ClusterError('GET', self.uri, 500,
                                   'the API root offers no neutron resource')
            self._root = self._call('GET', app['neutron'],
                                    accept=NEUTRON_TYPE)
        return self._root

    def _collection(self, coll):
        key = COLLECTIONS[coll][0]
        return self._discover()[key]

    def _item(self, coll, id_):
        key = COLLECTIONS[coll][1]
        return self._discover()[key].replace('{id}', id_)

    def create(self, coll, obj):
        one = vendor(COLLECTIONS[coll][2])
        return self._call('POST', self._collection(coll), obj, one, one)

    def create_bulk(self, coll, objs):
        many = vendor(COLLECTIONS[coll][3])
        return self._call('POST', self._collection(coll), list(objs),
                          many, many)

    def update(self, coll, id_, obj):
        one = vendor(COLLECTIONS[coll][2])
        return self._call('PUT', self._item(coll, id_), obj, one, one)

    def delete(self, coll, id_):
        return self._call('DELETE', self._item(coll, id_))

    def get(self, coll, id_):
        one = vendor(COLLECTIONS[coll][2])
        return self._call('GET', self._item(coll, id_), accept=one)

    def router_interface(self, op, router_id, info):
        url = self._discover()[op + '_router_interface_template'].replace(
            '{id}', router_id)
        return self._call('PUT', url, info, vendor('RouterInterface'))


def _message(raw):
    try:
        return json.loads(raw).get('message') or raw.decode()
    except Exception:
        return raw.decode(errors='replace') if raw else ''


def from_conf(conf):
    """A Client configured from neutron.conf's [MIDONET] group."""
    return Client(conf.midonet_uri, username=conf.username,
                  password=conf.password, project_id=conf.project_id,
                  token=conf.token, ca_file=conf.ca_file,
                  timeout=conf.timeout)
