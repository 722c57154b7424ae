"""Create an API token for a user; the raw token is printed once and never stored."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from t4dm_site.services import api_token_create, role_assign


class Command(BaseCommand):
    help = "Create an API token for USERNAME (optionally creating the user with a role). Prints the token."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--create-user", action="store_true", help="create the user if missing")
        parser.add_argument("--role", default=None, help="admin, researcher or evaluator (added to the user)")

    def handle(self, *args, username, name, create_user, role, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"no user {username!r}; pass --create-user to create one")
            user = User.objects.create_user(username=username)
        if role:
            try:
                role_assign(user=user, role=role)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        _, raw = api_token_create(user=user, name=name)
        self.stdout.write(raw)
