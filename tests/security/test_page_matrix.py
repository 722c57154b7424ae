"""Item 11, pages: every HTML route (enumerated from the URL resolver) × every identity gets what
PAGE_POLICY says. A route without an entry fails. Pages use the session; bearer tokens (revoked or a
worker's) count for nothing there, so those identities are anonymous."""

from __future__ import annotations

from django.urls import URLResolver, get_resolver

IDENTITIES = ("anonymous", "revoked", "worker_other", "evaluator", "other", "owner", "admin")
LOGIN = "login"  # a redirect to the login page

DASHBOARD = {
    "anonymous": LOGIN, "revoked": LOGIN, "worker_other": LOGIN, "evaluator": 403,
    "other": 200, "owner": 200, "admin": 200,
}  # fmt: skip
DASHBOARD_OWNED = {**DASHBOARD, "other": 404}
# POST-only actions on an owned record: the owner and admins are served (a redirect back), others not.
ACTION_OWNED = {**DASHBOARD, "other": 404, "owner": "ok", "admin": "ok"}
ACTION = {**DASHBOARD, "other": "ok", "owner": "ok", "admin": "ok"}
# Records this fixture does not create (a missing id): past the role gate is all that can be seen.
DASHBOARD_BY_ID = {**DASHBOARD, "other": 404, "owner": 404, "admin": 404}
LOGGED_IN = {**DASHBOARD, "evaluator": 200}
ASSIGNEE = {**DASHBOARD, "evaluator": 200, "other": 404, "owner": 404, "admin": 404}
PUBLIC = {name: 200 for name in IDENTITIES}

PAGE_POLICY = {
    "overview": ("GET", {**DASHBOARD, "evaluator": "ok"}),  # evaluators are sent on to their queue
    "job-detail": ("GET", DASHBOARD_OWNED),
    "demo-start": ("POST", ACTION),
    "experiments-list": ("GET", DASHBOARD),
    "experiments-compare": (
        "GET",
        {**DASHBOARD, "other": "ok", "owner": "ok", "admin": "ok"},
    ),  # 400: no runs named
    # Saved runs views: per account (the fixture's form body is refused with a 400: past the role gate).
    "runs-view-save": ("POST", ACTION),
    "runs-view-delete": ("POST", ACTION),
    "config-new": ("GET", DASHBOARD),
    "config-estimate": ("POST", ACTION),
    "rating-queue": ("GET", LOGGED_IN),
    "rate-task": ("GET", ASSIGNEE),
    "human-eval-list": ("GET", DASHBOARD),
    "human-eval-results": ("GET", DASHBOARD_OWNED),
    "evaluation-list": ("GET", DASHBOARD),
    "evaluation-detail": ("GET", DASHBOARD_OWNED),
    "workflow-list": ("GET", DASHBOARD),
    "workflow-demo": ("POST", ACTION),
    "workflow-detail": ("GET", DASHBOARD_BY_ID),
    "workflow-retry": ("POST", DASHBOARD_BY_ID),
    "dataset-list": ("GET", DASHBOARD),
    "dataset-detail": ("GET", DASHBOARD_OWNED),
    "registry-models": ("GET", DASHBOARD),
    "registry-model": ("GET", DASHBOARD_OWNED),
    # Refused here = sent back to the model page with the error, no evaluation started.
    "registry-compare": ("POST", {**ACTION_OWNED, "other": "refused"}),
    "registry-version": ("GET", DASHBOARD_OWNED),
    "registry-playground": ("GET", DASHBOARD_OWNED),
    "registry-version-stage": ("POST", ACTION_OWNED),
    "registry-version-evaluate": ("POST", ACTION_OWNED),
    "registry-version-signoff": ("POST", ACTION_OWNED),
    "registry-version-export": ("POST", ACTION_OWNED),
    "registry-export-download": ("GET", DASHBOARD_OWNED),  # export 1: made before the identities run
    "finetune-settings": ("GET", DASHBOARD),  # read-only; webhook secrets never shown (test_secrets)
    "human-eval-new": ("GET", DASHBOARD),
    "evaluation-new": ("GET", DASHBOARD),
    # Webhook subscriptions receive every user's events: admins only (403 for researchers too).
    "webhooks": ("GET", {**DASHBOARD, "other": 403, "owner": 403}),
    "webhook-toggle": ("POST", {**DASHBOARD, "other": 403, "owner": 403, "admin": 404}),  # wh-missing
    # Prometheus scrapes: admins (session) or the T4DM_METRICS_TOKEN bearer; a user token is not enough.
    "metrics": (
        "GET",
        {
            "anonymous": 401,
            "revoked": 403,
            "worker_other": 403,
            "evaluator": 403,
            "other": 403,
            "owner": 403,
            "admin": 200,
        },
    ),  # fmt: skip
    "health": ("GET", PUBLIC),  # says only which component is down, nothing about records
    "favicon": ("GET", PUBLIC),
    "login": ("GET", PUBLIC),
    "logout": ("POST", {name: 302 for name in IDENTITIES}),
}


def pages() -> list[tuple[str, str]]:
    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            else:
                yield prefix + str(p.pattern), p.name

    return [
        (route, name)
        for route, name in walk(get_resolver().url_patterns)
        if not route.startswith(("api/", "v1/", "admin/"))
    ]


def test_every_page_has_a_policy():
    missing = [f"{route} ({name})" for route, name in pages() if name not in PAGE_POLICY]
    assert not missing, "pages without an access policy (add them to PAGE_POLICY):\n" + "\n".join(missing)


def _url(route: str, world: dict) -> str:
    values = {
        "job_id": world["job_id"], "task_id": world["human_eval_task_id"],
        "evaluation_id": world["evaluation_id"], "dataset_id": world["dataset_id"],
        "model_id": world["model_id"], "version": world["version"], "export_id": 1,
        "workflow_id": "wf-missing", "subscription_id": "wh-missing",
    }  # fmt: skip
    url = "/" + route
    for name, value in values.items():
        url = url.replace(f"<str:{name}>", str(value)).replace(f"<int:{name}>", str(value))
    return url


def _matches(expected, response) -> bool:
    if response.status_code >= 500:
        return False
    if expected == LOGIN:
        return response.status_code == 302 and response["Location"].startswith("/login/")
    if expected == "refused":
        return response.status_code in (403, 404) or (
            response.status_code == 302 and not response["Location"].startswith("/evaluations/")
        )
    if expected == "ok":
        return response.status_code not in (401, 403, 404, 405) and not (
            response.status_code == 302 and response["Location"].startswith("/login/")
        )
    return response.status_code == expected


def test_each_identity_gets_what_the_page_policy_says(
    client, people, world, django_capture_on_commit_callbacks
):
    """One world, the identities in turn (the owner's actions come after the non-owner's were refused)."""
    from models_registry.models import ModelVersion
    from models_registry.services import model_version_export

    # Export 1, finished (the page's Export action only queues one for a worker now).
    version = ModelVersion.objects.get(model_id=world["model_id"], version=world["version"])
    assert model_version_export(version=version, merge=False, actor=people["owner"]).pk == 1
    wrong = []
    for identity in IDENTITIES:
        client.logout()
        headers = {}
        if identity in ("revoked", "worker_other"):
            token = world["other_job_token"] if identity == "worker_other" else world["revoked_token"]
            headers = {"Authorization": f"Bearer {token}"}
        elif identity != "anonymous":
            client.force_login(people[identity])
        with django_capture_on_commit_callbacks(execute=False):
            for route, name in pages():
                if name not in PAGE_POLICY or name == "logout":
                    continue
                method, policy = PAGE_POLICY[name]
                url = _url(route, world)
                if method == "POST":
                    data = {"version_a": world["version"], "version_b": world["version"]}
                    response = client.post(url, data, headers=headers)
                else:
                    response = client.get(url, headers=headers)
                if not _matches(policy[identity], response):
                    where = response.get("Location", "")
                    wrong.append(
                        f"{identity}: {method} {url} ({name}): {response.status_code} {where} "
                        f"(policy {policy[identity]})"
                    )
    assert not wrong, "\n".join(wrong)


def test_logout_is_post_only(client, people):
    client.force_login(people["owner"])
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302
