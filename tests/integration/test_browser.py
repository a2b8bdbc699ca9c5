"""A real browser through stapler: headless Chromium (Debian's) loads a page with 50
sub-resources over one HTTP/2 connection and reports, from performance.getEntries(), the
protocol each came over. A screenshot of the page is kept as browser.png beside the logs."""
import json
import os
import re
import shutil
import subprocess

from harness import StaplerCase, SANITIZED

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class BrowserTest(StaplerCase):
    def chromium(self, url, *extra):
        profile = os.path.join(self.tmp, "profile")
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--user-data-dir=" + profile, "--ignore-certificate-errors",
                "--virtual-time-budget=10000"] + list(extra) + [url]
        return subprocess.run(argv, capture_output=True, timeout=120)

    def test_page_with_50_resources_over_h2(self):
        if not os.path.exists(CHROMIUM):
            self.skipTest("chromium is not installed")
        p = self.proxy()
        url = "https://localhost:%d/page?n=50" % p.port
        r = self.chromium(url, "--dump-dom")
        dom = r.stdout.decode(errors="replace")
        m = re.search(r'<pre id="result">([^<]*)</pre>', dom)
        self.assertIsNotNone(m, r.stderr.decode(errors="replace")[-2000:])
        protocols = json.loads(m.group(1).replace("&quot;", '"'))
        self.assertEqual(protocols, {"h2": 51})  # the page and its 50 images
        shot = os.path.join(self.tmp, "browser.png")
        self.chromium(url, "--screenshot=" + shot, "--window-size=900,400")
        self.assertTrue(os.path.getsize(shot) > 1000)
        keep = os.environ.get("STAPLER_BROWSER_SCREENSHOT")
        if keep:
            shutil.copy(shot, keep)
        self.wait_log(p, "proto=h2 method=GET path=\"/pixel?i=49\"")
