"""Faithful fakes of Microsoft Entra ID and Microsoft Graph v1.0 for the local stack and tests.

Two HTTPS servers on 127.0.0.1 (throw-away `trustme` CA), one shared in-process state:

    from local.fake_microsoft import start_servers
    with start_servers(tmp_dir, client_id=CID, client_secret=SECRET) as fakes:
        fakes.entra_url   # ENTRA_AUTHORITY_HOST, e.g. https://127.0.0.1:41234
        fakes.graph_url   # GRAPH_BASE_URL, e.g. https://127.0.0.1:41235/v1.0
        fakes.ca_pem      # REQUESTS_CA_BUNDLE / SSL_CERT_FILE
        fakes.mint("user", tenant=TID, claims={"aud": "wrong"})   # signed test tokens

or `python -m local.fake_microsoft --state-dir D --entra-port P --graph-port Q --client-id X
--client-secret Y` (prints {"entra", "graph", "ca"} as one JSON line when ready).

Control API (both ports), JSON in and out — full reference in README.md next to this file:
  POST /_fake/reset                         everything back to start (keys kept)
  GET  /_fake/stats  (DELETE resets)        token requests, JWKS fetches, Graph pages, statuses …
  GET|POST /_fake/config                    switches, global or {"tenant": tid}; "faults": [rules]
  POST /_fake/rotate-keys | /_fake/retire-keys | /_fake/use-key, GET /_fake/keys
  POST /_fake/mint                          {"kind","tenant","claims","header","key","alg",…} -> token
  POST /_fake/apps                          register another app
  GET|DELETE /_fake/tenants/{tid}, POST …/restore, …/revoke-consent, …/grant-consent, …/consent,
  POST …/directory {"size"}, …/changes {"update","remove","restore","add"}, …/expire-delta-tokens,
  GET  …/demo-user, …/users, …/users/{id|index|upn}
"""

from .directory import DEFAULT_PROPERTIES, Directory
from .server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeMicrosoftServers, start_servers
from .state import FakeMicrosoft
from .tls import CaFiles, make_ca, server_ssl_context

__all__ = [
    "CaFiles", "DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "DEFAULT_PROPERTIES", "Directory", "FakeMicrosoft",
    "FakeMicrosoftServers", "make_ca", "server_ssl_context", "start_servers",
]
