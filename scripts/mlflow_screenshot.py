"""Regenerate ``docs/mlflow-runs.png``: MLflow's UI showing tracked ``liveshelf`` runs.

Runs ``liveshelf evaluate`` twice on Amazon Scientific (small) with ``--tracking-uri`` pointing at a
fresh sqlite store, starts ``mlflow ui`` on that store, and photographs the experiment's run table
in headless Chromium (``make chromium``)::

    .venv/bin/python scripts/mlflow_screenshot.py [--out docs/mlflow-runs.png]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"


def _tidy(page) -> None:  # type: ignore[no-untyped-def]
    """Switch the UI to classic model training and close the assistant side panel, when they are there."""
    for label in ("Model training",):
        button = page.get_by_text(label, exact=True)
        if button.count():
            button.first.click()
            page.wait_for_timeout(1500)
    for name in ("Close", "Got it"):
        close = page.get_by_role("button", name=name)
        if close.count():
            close.first.click()
            page.wait_for_timeout(500)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "mlflow-runs.png")
    ap.add_argument("--port", type=int, default=5057)
    args = ap.parse_args()
    from liveshelf.config import data_dir

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        data = f"unisrec:{data_dir() / 'amazon-scientific-small'}"
        for models, params in (("pop,itemknn", []), ("pop,sasrec", ["--param", "sasrec.epochs=5"])):
            cmd = [str(BIN / "liveshelf"), "evaluate", "--data", data, "--model", models, *params]
            subprocess.run([*cmd, "--out", f"{tmp}/eval-{models}", "--tracking-uri", uri], check=True)
        ui = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "ui",
                "--backend-store-uri",
                uri,
                "--port",
                str(args.port),
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{args.port}"
            for _ in range(120):
                try:
                    urllib.request.urlopen(base, timeout=1)
                    break
                except OSError:
                    time.sleep(0.5)
            from mlflow.tracking import MlflowClient

            exp = MlflowClient(uri).get_experiment_by_name("liveshelf-evaluate")
            run = MlflowClient(uri).search_runs([exp.experiment_id])[0]
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1500, "height": 900})
                page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs")
                page.wait_for_timeout(4000)
                _tidy(page)
                page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs")
                page.wait_for_timeout(5000)
                _tidy(page)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out.with_name("mlflow-experiment.png")))
                page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}/model-metrics")
                page.wait_for_timeout(5000)
                _tidy(page)
                search = page.get_by_placeholder("Search metric charts")
                if search.count():
                    search.first.fill("epoch/")
                    page.wait_for_timeout(2500)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            ui.terminate()
            ui.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
