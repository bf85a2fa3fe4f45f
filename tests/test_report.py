"""The run report: a real short run and evaluation rendered, then opened from disk in headless chromium.

The browser test drives Debian's chromium over the DevTools protocol (stdlib HTTP + websockets, pinned in
requirements.txt): it collects console errors, exceptions and every request the page makes, waits for every
<audio> to load its metadata and every <img> to decode, and keeps a full-page screenshot in its tmp_path
(the path is printed; `pytest -s` shows it, pytest keeps the last three runs' tmp folders).
"""
import base64
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from common.config import hparams
from export.apps import evaluate
from export.apps import report
from gpu_training import train as gpu_train
from tests.conftest import error_line, run_entrypoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_TIMEOUT = 60

# Resolves to what the page holds once every sound and image has loaded (or failed), and whether each face
# flip-book moved within 0.4 s.
PAGE_CHECK = """
(async () => {
  const audios = Array.from(document.querySelectorAll("audio"));
  const loaded = Promise.all(audios.map(a => a.readyState >= 1 || a.error ? null : new Promise(done => {
    a.addEventListener("loadedmetadata", done, {once: true});
    a.addEventListener("error", done, {once: true});
  })));
  const images = Array.from(document.images);
  const decoded = Promise.all(images.map(i => i.decode().then(() => true, () => false)));
  const settled = await Promise.race([Promise.all([loaded, decoded]), new Promise(done => setTimeout(done, 30000))]);
  const faces = Array.from(document.querySelectorAll(".face"));
  const before = faces.map(f => getComputedStyle(f).backgroundPositionX);
  await new Promise(done => setTimeout(done, 400));
  return {
    audio: audios.map(a => ({label: a.closest("figure").querySelector("b").textContent,
                             duration: a.duration, error: a.error ? a.error.code : null})),
    images: images.map((i, k) => ({alt: i.alt, width: i.naturalWidth, decoded: settled ? settled[1][k] : false})),
    faces_moving: faces.map((f, i) => getComputedStyle(f).backgroundPositionX !== before[i]),
    page_width: document.documentElement.scrollWidth, window_width: window.innerWidth,
    per_clip_box: (b => ({scroll: b.scrollWidth, client: b.clientWidth}))(
      document.querySelector("details[open] table").parentElement),
  };
})()
"""


@pytest.fixture(scope="module")
def evaluated_run(synthetic_data, tmp_path_factory):
    """A real 2-step run (checkpoints and plots at both steps, both logged) scored on the test split, with the
    vocoder ceiling."""
    run_dir = str(tmp_path_factory.mktemp("report") / "run")
    code = gpu_train.main(["--data", synthetic_data, "--run-dir", run_dir, "--steps", "2", "--checkpoint-every",
                           "1", "--log-every", "1", "--workers", "1"])
    assert code == 0
    eval_dir = os.path.join(os.path.dirname(run_dir), "eval")
    evaluate.evaluate(run_dir, synthetic_data, "test", eval_dir, plot=True, ceiling=True)
    return run_dir, eval_dir


class DevTools(object):
    """Just enough of the Chrome DevTools protocol: commands by id, every event kept in order."""

    def __init__(self, url):
        from websockets.sync.client import connect
        self.socket = connect(url, max_size=None, open_timeout=BROWSER_TIMEOUT)
        self.events = []
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=BROWSER_TIMEOUT))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def wait_for(self, method):
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.socket.recv(timeout=BROWSER_TIMEOUT)))


def open_in_chromium(page, screenshot):
    """Load ``page`` from disk; (page check result, console errors, non-local requests). Keeps a screenshot."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    browser = subprocess.Popen([CHROMIUM, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
                                "--mute-audio", "--remote-debugging-port=0", "--user-data-dir=" + profile,
                                "--window-size=1300,1000", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + BROWSER_TIMEOUT
        while not os.path.isfile(port_file) or not open(port_file).read().strip():
            assert browser.poll() is None and time.time() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        with urllib.request.urlopen("http://127.0.0.1:%s/json/list" % port, timeout=BROWSER_TIMEOUT) as response:
            target = [t for t in json.load(response) if t["type"] == "page"][0]
        tools = DevTools(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.call(domain + ".enable")
        tools.call("Page.navigate", url="file://" + os.path.abspath(page))
        tools.wait_for("Page.loadEventFired")
        result = tools.call("Runtime.evaluate", expression=PAGE_CHECK, awaitPromise=True, returnByValue=True)
        shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        tools.socket.close()
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)
    errors = []
    requests = []
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(params["args"])
        elif method == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"])
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith("data:") and url != "file://" + os.path.abspath(page):
                requests.append(url)
    assert "exceptionDetails" not in result, result
    return result["result"]["value"], errors, requests


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium); "
                                              ".ci/run installs it")
def test_page_plays_every_clip_and_shows_every_image_in_chromium(evaluated_run, tmp_path):
    """Also: in a 1300 px window the page does not scroll sideways, though the per-clip table of GRID data
    (recognised words per system) is wider than that; the table scrolls inside its box."""
    run_dir, eval_dir = evaluated_run
    eval_dir = _with_word_columns(eval_dir, str(tmp_path / "eval"))
    page = report.build_report(run_dir, [eval_dir], out=str(tmp_path / "report.html"))
    screenshot = str(tmp_path / "report.png")
    checked, errors, requests = open_in_chromium(page, screenshot)
    print("report screenshot: %s" % screenshot)
    assert errors == [] and requests == []
    with open(os.path.join(eval_dir, "scores.csv")) as f:
        clips = len(list(csv.DictReader(f)))
    assert [a["label"] for a in checked["audio"]] == ["ground truth", "model", "baseline", "ceiling"] * clips
    for player in checked["audio"]:
        assert player["error"] is None and player["duration"] > 0, player
    assert len(checked["images"]) >= 5 + 4 + clips * 6  # curves, 2 checkpoints x 2 plots, per clip 4 mels+stills+plot
    for image in checked["images"]:
        assert image["decoded"] and image["width"] > 0, image
    assert checked["faces_moving"] == [True] * clips
    assert os.path.getsize(screenshot) > 10000
    assert checked["page_width"] <= checked["window_width"] == 1300, checked
    assert checked["per_clip_box"]["scroll"] > checked["per_clip_box"]["client"], checked


def _with_word_columns(eval_dir, out):
    """A copy of ``eval_dir`` whose scores.csv has the recognised words of each system, as on GRID data."""
    shutil.copytree(eval_dir, out)
    with open(os.path.join(out, "scores.csv")) as f:
        rows = list(csv.DictReader(f))
    words = {"%s_words" % system: "bin blue at f two now" for system in evaluate.WORD_SYSTEMS}
    with open(os.path.join(out, "scores.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + list(words))
        writer.writeheader()
        for row in rows:
            writer.writerow(dict(row, **words))
    return out


def test_score_tables_take_new_columns_and_keep_the_paper_apart(evaluated_run, tmp_path):
    """A metric and a system nobody told the template about show up; the paper's rows sit in their own box."""
    run_dir, eval_dir = evaluated_run
    extended = str(tmp_path / "eval")
    shutil.copytree(eval_dir, extended)
    with open(os.path.join(extended, "summary.json")) as f:
        summary = json.load(f)
    summary["model"]["wer"] = 0.75
    summary["oracle"] = {"pesq": 3.5, "stoi": 0.9, "estoi": 0.8, "wer": 0.125}
    with open(os.path.join(extended, "summary.json"), "w") as f:
        json.dump(summary, f)
    with open(os.path.join(extended, "scores.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(extended, "scores.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + ["model_wer", "oracle_stoi", "oracle_wer"])
        writer.writeheader()
        for row in rows:
            writer.writerow(dict(row, model_wer=0.75, oracle_stoi=0.9, oracle_wer=0.125))
    html = open(report.build_report(run_dir, [extended], out=str(tmp_path / "r.html"), max_clips=1)).read()
    ours, paper = html.split("another data set, not comparable")
    means = ours[ours.index("system (this data set)"):ours.index("per clip")]
    assert "<th>wer</th>" in means and "<td>oracle</td>" in means and "0.125" in means
    assert '<th colspan="2">oracle</th>' in ours and "pesq_failed" not in means
    for name in summary["reference"]:
        assert name not in ours and name in paper
    assert html.count("<audio") == 4 and "more only in the table" in html


def test_interrupted_run_without_evaluation_gets_a_page_with_its_bench(untrained_run, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(untrained_run, run_dir)
    with open(os.path.join(run_dir, "hparams.json")) as f:
        values = json.load(f)
    values["tacotron_batch_size"] = 3
    with open(os.path.join(run_dir, "hparams.json"), "w") as f:
        json.dump(values, f)
    bench = {"rows": [{"preset": "synthetic", "target": "npu", "sec_per_step": 0.5, "world_size": 2}], "cpu_count": 2}
    with open(os.path.join(run_dir, "bench.json"), "w") as f:
        json.dump(bench, f)
    html = open(report.build_report(run_dir)).read()
    assert '<h2 id="bench">' in html and "<th>world_size</th>" in html and "<td>0.5</td>" in html
    assert "no run_summary.json: training was interrupted" in html
    assert "no evaluation of this run yet" in html and "no train_log.jsonl lines yet" in html
    assert "<td>tacotron_batch_size</td><td>3</td><td>8</td>" in html
    assert "model.ckpt-1" in html


@pytest.mark.parametrize("key", ["target", "device_tree"])
def test_run_facts_name_the_target_also_of_a_run_dir_written_before_the_rename(key, tmp_path):
    with open(str(tmp_path / "run_summary.json"), "w") as f:
        json.dump({key: "npu", "preset": "synthetic"}, f)
    facts = dict(report.run_section(str(tmp_path), hparams.resolve("synthetic"))["facts"])
    assert facts["target"] == "npu"


def test_missing_run_dir_or_a_folder_that_is_no_run_is_one_error_line(tmp_path, capsys):
    code, _, stderr = run_entrypoint(capsys, report.main, str(tmp_path / "absent"))
    assert code == 2 and "does not exist" in error_line(stderr)
    code, _, stderr = run_entrypoint(capsys, report.main, str(tmp_path))
    assert code == 2 and "is not a run directory" in error_line(stderr)
    assert not os.path.exists(str(tmp_path / "report.html"))


def test_invoke_evaluate_and_invoke_report_write_the_page(untrained_run, synthetic_data, tmp_path):
    """As a user types them: evaluate leaves RUN/eval-test and the page; report rewrites it elsewhere on demand."""
    run_dir = str(tmp_path / "run")
    shutil.copytree(untrained_run, run_dir)
    invoke = [os.path.join(os.path.dirname(sys.executable), "invoke")]
    evaluated = subprocess.run(invoke + ["evaluate", "--checkpoint", run_dir, "--data", synthetic_data], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    html = open(os.path.join(run_dir, "report.html")).read()
    assert os.path.join(run_dir, "eval-test") in html and html.count("<audio") == 3 * 2
    reported = subprocess.run(invoke + ["report", run_dir, "--out", str(tmp_path / "again.html"), "--max-clips", "1"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=600)
    assert reported.returncode == 0, reported.stderr[-3000:]
    assert open(str(tmp_path / "again.html")).read().count("<audio") == 3
