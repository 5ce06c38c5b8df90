// Berth's dashboard, where replicas run: the nodes (GET /api/v1/nodes: Swarm's nodes with
// their state, availability, how many of Berth's replicas each runs, and why a drain waits;
// one engine shows its one node, `local`) and, on a deployment's page, each replica's node,
// state and health. Loaded with their page, and again (debounced) when a deployment's status
// changes, since replicas move with it. Uses app.js's `api`, `el`, `$`, `debounce` and
// `renderReplicas`; every text is set with textContent.
"use strict";

async function loadNodes() {
  const rows = await api("/nodes");
  const tbody = $("nodes").tBodies[0];
  tbody.replaceChildren();
  for (const node of rows) {
    const tr = el("tr", null, node.state === "ready" ? "" : "lost");
    tr.id = "node-" + node.name;
    tr.append(el("td", node.name), el("td", node.role), el("td", node.state, "state"),
      el("td", node.availability), el("td", node.replicas, "replicas"),
      el("td", node.engine_version || "-"), el("td", node.note || "", "message"));
    tbody.append(tr);
  }
}

function placementChanged(name) {
  if (state.detail === null) debounce("nodes", 500, loadNodes);
  else if (state.detail === name) {
    debounce("replicas", 300, async () => {
      const found = await api("/deployments/" + encodeURIComponent(name));
      if (state.detail === name) renderReplicas(found.replicas || []);
    });
  }
}
