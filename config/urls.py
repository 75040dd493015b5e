from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="stories:list", permanent=False)),
    path("accounts/", include("accounts.urls")),
    path("stories/", include("stories.urls")),
    path("admin/", admin.site.urls),
]
