// Shared by the pages of `perceptions serve`: the access token and one way to call the JSON API.
// Plain JavaScript, no build step, nothing fetched from elsewhere. Server and user text is only ever put into
// the page with textContent (or as a form value), never as HTML.
"use strict";

const perceptions = (() => {
  const token = document.body.dataset.token || "";

  // A same-origin URL with the token added when the server asked for one (the API and image URLs need it).
  function withToken(url) {
    const u = new URL(url, window.location.href);
    if (token && !u.searchParams.has("token")) u.searchParams.set("token", token);
    return u.origin === window.location.origin ? u.pathname + u.search : u.href;
  }

  // fetch + JSON; a non-2xx answer or a network failure becomes an Error with one line to show the user.
  async function api(path, options = {}) {
    const headers = Object.assign({Accept: "application/json"}, options.headers || {});
    if (token) headers["X-Token"] = token;
    let response;
    try {
      response = await fetch(withToken(path), Object.assign({}, options, {headers}));
    } catch (e) {
      throw new Error("the server did not answer (is `perceptions serve` still running?)");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const line = body && typeof body.error === "string" ? body.error
                                                           : `HTTP ${response.status} ${response.statusText}`;
      throw new Error(line.split("\n")[0]);
    }
    if (body === null) throw new Error(`the server's answer to ${path} was not JSON`);
    return body;
  }

  // The colour of a decile bar: viridis from 1 (low) to 10 (high), as on the map page.
  const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
                   "#b5de2b", "#fde725"];
  function decileColour(decile) {
    const i = Math.min(10, Math.max(1, Math.round(decile))) - 1;
    return VIRIDIS[i];
  }

  return {token, withToken, api, decileColour};
})();
