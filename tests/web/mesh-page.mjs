// The mesh page in a real browser (Debian's Chromium, driven by playwright-core): opens the
// control plane's page, waits until it shows a cross-cluster edge with a non-zero request
// rate, stores a screenshot, then times the page rendering a synthetic 1,000-service mesh.
//
//   node tests/web/mesh-page.mjs URL SCREENSHOT [FROM_CLUSTER TO_CLUSTER]
//
// Prints one line per finding; exits 1 with the reason when the page does not show them.
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  console.error("playwright-core is not installed: run scripts/install-web-test.sh");
  process.exit(1);
}
const [url, screenshot, from = "cluster1", to = "cluster2"] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node tests/web/mesh-page.mjs URL SCREENSHOT [FROM_CLUSTER TO_CLUSTER]");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  await page.goto(url);
  const edge = `svg .edge[data-from="${from}"][data-to="${to}"]`;
  await page.waitForFunction(sel => {
    const e = document.querySelector(sel);
    return e && Number(e.dataset.rps) > 0;
  }, edge, { timeout: 45000 });
  const rps = Number(await page.getAttribute(edge, "data-rps"));
  const row = await page.locator("tr.edge-row.cross").first().innerText();
  console.log(`cross-cluster edge ${from} -> ${to} at ${rps.toFixed(2)} rps; row: ${row.replace(/\s+/g, " ")}`);
  const proxies = await page.locator("#proxies td.SYNCED").count();
  console.log(`proxies synced cells: ${proxies}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);
  // 1,000 services, 3 clusters, 2,000 edges: the page's own render, timed in the page.
  const ms = await page.evaluate(() => {
    const clusters = ["cluster1", "cluster2", "cluster3"];
    const services = [], edges = [], proxies = [];
    for (let i = 0; i < 1000; i++) {
      services.push({ host: `svc-${i}.ns-${i % 50}.svc.cluster.local`, clusters: clusters.slice(0, 1 + (i % 3)), endpoints: 10 });
      for (const j of [1, 2]) edges.push({
        source: { cluster: clusters[i % 3], namespace: `ns-${i % 50}`, workload: `svc-${i}` },
        destination: { cluster: clusters[(i + j) % 3], namespace: `ns-${(i + j) % 50}`, workload: `svc-${(i + j) % 1000}` },
        service: `svc-${(i + j) % 1000}.ns-${(i + j) % 50}.svc.cluster.local`, rps: i % 7, error_rate: (i % 10) / 100, p99_ms: 5 + i % 40 });
      proxies.push({ node_id: `sidecar~10.0.${i >> 8}.${i & 255}~svc-${i}-0.ns-${i % 50}~ns-${i % 50}.svc.cluster.local`, cluster: clusters[i % 3], sync: { cds: "SYNCED", lds: "SYNCED", eds: "SYNCED", rds: "SYNCED" } });
    }
    const data = { cluster: "cluster1", network: "network1", version: 1, networks: { network1: ["cluster1"], network2: ["cluster2", "cluster3"] },
      gateways: [], services, edges, proxies, scraped: [1000, 0], measuring: false };
    const t0 = performance.now();
    window.isthmusRender(data);
    // Until the browser has laid the page out (what a user waits for).
    document.body.getBoundingClientRect();
    return performance.now() - t0;
  });
  const rows = await page.locator("#services tr").count();
  console.log(`1000 services rendered in ${ms.toFixed(1)} ms (${rows - 1} service rows)`);
  if (errors.length) {
    console.error(`page errors: ${errors.join("; ")}`);
    code = 1;
  }
} catch (e) {
  console.error(`the mesh page did not show a cross-cluster edge ${from} -> ${to}: ${e.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
