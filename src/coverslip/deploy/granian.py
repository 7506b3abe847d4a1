"""Run the WSGI app under Granian."""

from __future__ import annotations

from coverslip.config import Settings
from coverslip.deploy.servers import granian_threads

# The launcher marks chunked bodies as terminated and trusts web.forwarded_allow_ips.
TARGETS = {
    "web": "coverslip.deploy.targets:web_granian",
    "thumbs": "coverslip.deploy.targets:thumbs_granian",
}


def serve(settings: Settings, role: str = "web") -> None:
    """Serve in the foreground until interrupted; workers build the app from the environment."""
    from granian import Granian
    from granian.constants import Interfaces

    prefix = "thumbs" if role == "thumbs" else "web"
    Granian(
        TARGETS[role],
        factory=True,
        address=settings[f"{prefix}.host"],
        port=settings[f"{prefix}.port"],
        interface=Interfaces.WSGI,
        workers=settings[f"{prefix}.workers"],
        blocking_threads=granian_threads(settings),
        backlog=2048,
        log_access=False,
    ).serve()
