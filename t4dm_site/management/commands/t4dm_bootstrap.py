"""Create the roles and, when no admin exists yet, a first admin account (printed once)."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from t4dm_site.roles import ADMIN, RESEARCHER, ROLES
from t4dm_site.services import role_assign


class Command(BaseCommand):
    help = "Ensure the role groups exist and create a first admin account if there is none."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default=None, help="default: a random password, printed once")

    def handle(self, *args, username, password, **options):
        for role in ROLES:
            Group.objects.get_or_create(name=role)
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                "An admin account already exists; log in with it (or `manage.py changepassword`)."
            )
            return
        password = password or secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email="", password=password)
        role_assign(user=user, role=ADMIN)
        role_assign(user=user, role=RESEARCHER)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the first admin account: username {username!r} password {password!r}"
            )
        )
