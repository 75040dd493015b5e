// Site-wide behaviour: htmx settings, notifications (toasts). Alpine holds only UI state here;
// the server owns the data and answers every change with the fragment to show.

document.addEventListener("DOMContentLoaded", () => {
  if (!window.htmx) return;
  // 422 carries a form with its errors (the author's text kept): swap it like a 200.
  htmx.config.responseHandling = [
    { code: "204", swap: false },
    { code: "[23]..", swap: true },
    { code: "422", swap: true },
    { code: "[45]..", swap: false, error: true },
  ];
  document.body.addEventListener("htmx:responseError", (event) => {
    const status = event.detail.xhr.status;
    const message =
      status === 404 ? "That is no longer here (it may have been deleted)." :
      status === 429 ? "Too many requests: please wait a moment." :
      status === 403 ? "Your session expired: please reload the page." :
      `Something went wrong on our side (${status}). Your text is unchanged.`;
    window.dispatchEvent(new CustomEvent("notify", { detail: { level: "error", message } }));
  });
  document.body.addEventListener("htmx:sendError", () => {
    window.dispatchEvent(new CustomEvent("notify", {
      detail: { level: "error", message: "Cannot reach Story-Sprout. Check your connection." },
    }));
  });
});

document.addEventListener("alpine:init", () => {
  let nextId = 1;
  window.Alpine.data("toasts", () => ({
    items: [],
    init() {
      this.$el.querySelectorAll("template[data-initial]").forEach((t) => {
        this.add({ level: t.dataset.level, message: t.content.textContent.trim() });
      });
    },
    add(detail) {
      const id = nextId++;
      const level = (detail && detail.level) || "info";
      this.items.push({ id, level, message: (detail && detail.message) || "" });
      if (level !== "error") setTimeout(() => this.remove(id), 6000);
    },
    remove(id) {
      this.items = this.items.filter((t) => t.id !== id);
    },
  }));
});
