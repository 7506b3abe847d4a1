// Helpers shared by every page: the URL prefix, CSRF-aware fetch, the group switcher.

export const prefix = document.body.dataset.prefix || "";
export const csrf = document.body.dataset.csrf || "";

export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const method = (options.method || "GET").toUpperCase();
  if (!["GET", "HEAD"].includes(method) && csrf) headers.set("X-CSRFToken", csrf);
  const response = await fetch(prefix + path, { credentials: "same-origin", ...options, headers });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = body.description || body.title || message;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

const switcher = document.getElementById("group-switch");
if (switcher) {
  switcher.addEventListener("change", () => {
    document.cookie = `coverslip_group=${switcher.value}; path=${prefix || "/"}; SameSite=Lax`;
    window.location.reload();
  });
}
