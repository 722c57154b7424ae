from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from experiments import views as experiment_views
from t4dm_site.api import api

urlpatterns = [
    path("", experiment_views.overview, name="overview"),
    path("jobs/<str:job_id>/", experiment_views.job_detail, name="job-detail"),
    path("demo/start/", experiment_views.demo_start, name="demo-start"),
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]

admin.site.site_header = "T4DM Fine-Tune administration"
admin.site.site_title = "T4DM admin"
