"""Mark running jobs whose worker stopped heartbeating as lost; requeue or fail them by policy; prune
live-page outbox rows older than T4DM_OUTBOX_KEEP_HOURS (t4dm_site/housekeeping.py).

`t4dm_up` runs this check every T4DM_REAP_INTERVAL_SECONDS; run this command from cron where the web
side is started some other way.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from experiments.services import jobs_reap_lost
from t4dm_site.housekeeping import prune_outboxes


class Command(BaseCommand):
    help = "Requeue (or fail) running jobs whose worker sent no heartbeat for T4DM_HEARTBEAT_TIMEOUT seconds."

    def add_arguments(self, parser):
        parser.add_argument("--loop", type=float, default=0, help="repeat every N seconds (0: once)")

    def handle(self, *args, loop: float, **options):
        while True:
            for job in jobs_reap_lost():
                self.stdout.write(f"{job.public_id}: its worker stopped heartbeating; now {job.status}")
            for label, count in prune_outboxes().items():
                if count:
                    self.stdout.write(f"{label}: pruned {count} old outbox rows")
            if not loop:
                return
            time.sleep(loop)
