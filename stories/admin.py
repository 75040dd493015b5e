from django.contrib import admin
from ordered_model.admin import OrderedInlineModelAdminMixin, OrderedTabularInline

from stories.models import Page, Story


class PageInline(OrderedTabularInline):
    model = Page
    fields = ("content", "order", "move_up_down_links")
    readonly_fields = ("order", "move_up_down_links")
    ordering = ("order",)
    extra = 0


@admin.register(Story)
class StoryAdmin(OrderedInlineModelAdminMixin, admin.ModelAdmin):
    list_display = ("title", "owner", "page_count", "updated_at")
    list_filter = ("updated_at",)
    search_fields = ("title", "description", "owner__username")
    raw_id_fields = ("owner",)
    inlines = [PageInline]

    @admin.display(description="pages")
    def page_count(self, obj: Story) -> int:
        return obj.pages.count()


@admin.register(Page)
class PageAdmin(admin.ModelAdmin):
    list_display = ("__str__", "story", "order", "updated_at")
    list_select_related = ("story",)
    search_fields = ("content", "story__title")
    raw_id_fields = ("story",)
