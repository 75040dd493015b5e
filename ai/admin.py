from django.contrib import admin

from ai.models import AiJob


@admin.register(AiJob)
class AiJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "status",
        "job_type",
        "model_name",
        "usage_tokens",
        "cost_usd",
        "attempts",
        "requested_by",
        "created_at",
    )
    list_filter = ("status", "job_type", "model_name", "created_at")
    search_fields = ("=id", "workflow_id", "=target_object_id")
    readonly_fields = [f.name for f in AiJob._meta.fields]
    list_select_related = ("requested_by",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False  # jobs are created by the product, never by hand
