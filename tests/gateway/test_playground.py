"""The browser playground in a real headless browser (Debian's chromium driven by Playwright).

Each panel does a real round trip through the gateway's HTTP port to the real services,
and the test reads what a person would see. Screenshots go to out/test-artifacts/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from scripts.demo import sample_scene, write_inputs
from tests.conftest import http_url

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "out" / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Debian's chromium as Playwright's browser; nothing reaches beyond loopback.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The sample inputs `make demo` leaves (the scene, its sound, photos/), plus a file that is no image."""
    folder = tmp_path_factory.mktemp("playground-inputs")
    write_inputs(folder)
    (folder / "junk.png").write_bytes(b"not an image")
    return folder, sample_scene()


@pytest.fixture(scope="module")
def page(gateway):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI (scripts/bootstrap.sh installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    base = http_url(gateway)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.requests_seen = []
        page.console_errors = []
        page.on("request", lambda request: page.requests_seen.append(request.url))
        page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        page.base = base
        yield page
        browser.close()


def submit(page, panel: str, form: str = "form") -> str:
    page.click(f"#{panel} {form} button[type=submit]")
    page.wait_for_selector(f"#{panel}[data-state=done], #{panel}[data-state=failed]", timeout=120_000)
    state = page.get_attribute(f"#{panel}", "data-state")
    page.screenshot(path=str(ARTIFACTS / f"playground-{panel}.png"), full_page=True)
    return state


def tab(page, panel: str) -> None:
    page.click(f"#tabs button[data-panel={panel}]")


def decoded(page, selector: str) -> list[int]:
    """naturalWidth of each image matched: 0 for an image the browser could not decode."""
    return page.eval_on_selector_all(selector, "images => images.map(i => i.complete ? i.naturalWidth : 0)")


def test_caption_shows_the_words_and_the_map_follows_the_word(page, files):
    folder, scene = files
    assert page.inner_text("#health") == "SERVING"
    assert "captioning" in page.inner_text("#caption select.models")  # fed by Captioning/ListModels
    page.set_input_files("#caption input[name=image]", str(folder / "scene.png"))
    assert submit(page, "caption") == "done", page.inner_text("#caption .error")
    words = page.locator("#caption .word")
    caption = page.inner_text("#caption .caption-words")
    assert any(o.shape in caption for o in scene.objects) and any(o.colour in caption for o in scene.objects)
    page.wait_for_function("document.querySelector('#caption .picture').naturalWidth > 0")
    maps = []
    for index in range(words.count()):
        words.nth(index).hover()
        assert page.get_attribute("#caption", "data-word") == words.nth(index).inner_text()
        maps.append(page.eval_on_selector("#caption .overlay", "c => c.toDataURL()"))
    assert len(set(maps)) > 1, "the attention map did not change with the word"
    words.nth(words.count() // 2).click()
    page.screenshot(path=str(ARTIFACTS / "playground-caption-word.png"), full_page=True)


def test_caption_error_is_shown_as_the_service_states_it(page, files):
    folder, _ = files
    tab(page, "caption")
    page.set_input_files("#caption input[name=image]", str(folder / "junk.png"))
    assert submit(page, "caption") == "failed"
    error = page.inner_text("#caption .error")
    assert error.startswith("INVALID_ARGUMENT: image.data") and "image.data:" in error


def test_imagine_grid(page):
    tab(page, "imagine")
    assert page.eval_on_selector("#imagine select.models", "s => s.value") == "text2image"
    page.fill("#imagine input[name=count]", "3")
    page.fill("#imagine input[name=seed]", "11")
    assert submit(page, "imagine") == "done", page.inner_text("#imagine .error")
    page.wait_for_function("[...document.querySelectorAll('#imagine .grid img')].every(i => i.naturalWidth > 0)")
    assert decoded(page, "#imagine .grid img") == [64, 64, 64]
    assert page.inner_text("#imagine .meta").startswith("seed 11")
    assert all("agreement" in c for c in page.locator("#imagine figcaption").all_inner_texts())


def test_translate_side_by_side(page, files):
    folder, _ = files
    tab(page, "translate")
    models = page.eval_on_selector_all("#translate select.models option", "os => os.map(o => o.value)")
    assert "day2night" in models and "text2image" not in models
    page.select_option("#translate select.models", "day2night")
    page.set_input_files("#translate input[name=image]", str(folder / "scene.png"))
    assert submit(page, "translate") == "done", page.inner_text("#translate .error")
    page.wait_for_function("document.querySelector('#translate .after').naturalWidth > 0")
    assert decoded(page, "#translate .before, #translate .after") == [64, 64]
    assert page.inner_text("#translate .after-caption")
    assert page.eval_on_selector("#translate .warnings", "w => w.hidden")  # a scene is day2night's input
    # The same scene where sketch2photo expects a sketch: translated, with the built-in's note shown.
    page.select_option("#translate select.models", "sketch2photo")
    assert submit(page, "translate") == "done", page.inner_text("#translate .error")
    assert "'sketch2photo'" in page.inner_text("#translate .warnings")


def test_listen_draws_the_heatmap_and_box(page, files):
    folder, scene = files
    tab(page, "listen")
    page.set_input_files("#listen input[name=image]", str(folder / "scene.png"))
    page.set_input_files("#listen input[name=audio]", str(folder / "sound.wav"))
    assert submit(page, "listen") == "done", page.inner_text("#listen .error")
    truth = scene.objects[scene.sounding_index]
    summary = page.inner_text("#listen .summary")
    assert truth.colour in summary and truth.shape in summary
    painted = page.eval_on_selector("#listen .overlay", """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n / (c.width * c.height); }""")
    assert 0 < painted < 1


def test_index_then_search(page, files):
    folder, _ = files
    tab(page, "search")
    page.fill("#search input[name=collection]", "playground-test")
    photos = sorted((folder / "photos").iterdir())
    page.set_input_files("#search input[name=images]", [str(p) for p in photos])
    assert submit(page, "search", ".index-form") == "done", page.inner_text("#search .error")
    assert page.inner_text("#search .meta").startswith(f"indexed {len(photos)} pictures into playground-test")
    page.set_input_files("#search .search-form input[name=image]", str(photos[2]))
    assert submit(page, "search", ".search-form") == "done", page.inner_text("#search .error")
    assert page.locator("#search .hits li").first.inner_text().startswith(photos[2].name)
    offered = page.eval_on_selector_all("#collections option", "os => os.map(o => o.value)")
    assert "playground-test" in offered  # the collection field offers ListCollections' names


def test_pipeline_shows_each_event(page, files):
    folder, _ = files
    tab(page, "pipeline")
    page.set_input_files("#pipeline input[name=scene]", str(folder / "scene.png"))
    assert submit(page, "pipeline") == "done", page.inner_text("#pipeline .error")
    rows = page.locator("#pipeline tbody tr").all_inner_texts()
    finished = {r.split("\t")[0] for r in rows if "\tfinished\t" in r}
    assert finished == {"look", "night", "night_caption"}, rows
    assert len(rows) == 6  # a started and a finished event per step


def test_explain_a_caption_word_one_overlay_per_method(page, files):
    folder, scene = files
    tab(page, "explain")
    # Methods come from the OpenAPI document; CAM is the judge's only, so it is greyed out for a word.
    offered = page.eval_on_selector_all("#explain input[name=method]", "bs => bs.map(b => b.value)")
    assert {"EXPLAIN_METHOD_GRAD_CAM", "EXPLAIN_METHOD_OCCLUSION", "EXPLAIN_METHOD_CAM"} <= set(offered)
    assert "EXPLAIN_METHOD_UNSPECIFIED" not in offered
    assert "inapplicable" in page.get_attribute("#explain label:has(input[value=EXPLAIN_METHOD_CAM])", "class")
    page.select_option("#explain select[name=target]", "judge")
    assert "inapplicable" not in page.get_attribute("#explain label:has(input[value=EXPLAIN_METHOD_CAM])", "class")
    page.check("#explain input[value=EXPLAIN_METHOD_CAM]")
    page.select_option("#explain select[name=target]", "caption")  # CAM does not apply: unticked
    assert not page.is_checked("#explain input[value=EXPLAIN_METHOD_CAM]")
    assert page.is_visible("#explain input[name=word]") and not page.is_visible("#explain input[name=text]")

    page.set_input_files("#explain input[name=image]", str(folder / "scene.png"))
    checked = page.eval_on_selector_all("#explain input[name=method]:checked", "bs => bs.map(b => b.value)")
    assert checked == ["EXPLAIN_METHOD_GRAD_CAM", "EXPLAIN_METHOD_OCCLUSION"]
    page.fill("#explain input[name=word]", "3")
    page.fill("#explain input[name=window]", "16")  # the smallest budget: 4 x 4 occlusion positions
    page.fill("#explain input[name=stride]", "16")
    assert submit(page, "explain") == "done", page.inner_text("#explain .error")
    meta = page.inner_text("#explain .meta")
    word, caption = meta.split('"')[1], meta.split('"')[3]
    assert caption.split()[3] == word and "log p" in meta
    assert any(o.shape in caption for o in scene.objects)
    methods = page.eval_on_selector_all("#explain .grid figure", "fs => fs.map(f => f.dataset.method)")
    assert methods == ["EXPLAIN_METHOD_GRAD_CAM", "EXPLAIN_METHOD_OCCLUSION"]
    names = page.locator("#explain .grid figcaption").all_inner_texts()
    assert names[0].startswith("grad-cam (") and names[1].startswith("occlusion (")
    page.wait_for_function("[...document.querySelectorAll('#explain .grid img')].every(i => i.complete)")
    width = Image.open(folder / "scene.png").width  # overlays come at the picture's size
    assert decoded(page, "#explain .grid img") == [width, width]
    overlays = page.eval_on_selector_all("#explain .grid img", "is => is.map(i => i.src)")
    assert len(set(overlays)) == 2, "the two methods drew the same picture"
    page.screenshot(path=str(ARTIFACTS / "playground-explain-word.png"), full_page=True)



@pytest.mark.parametrize("target, method, summary", [
    ("match", "EXPLAIN_METHOD_GRADIENT", "similarity "),
    ("localization", "EXPLAIN_METHOD_GRADIENT", "audio-visual score "),
    ("judge", "EXPLAIN_METHOD_CAM", "shape class "),
])
def test_explain_the_other_targets(page, files, target, method, summary):
    folder, _ = files
    tab(page, "explain")
    page.select_option("#explain select[name=target]", target)
    page.set_input_files("#explain input[name=image]", str(folder / "scene.png"))
    if target == "localization":
        page.set_input_files("#explain input[name=audio]", str(folder / "sound.wav"))
    for box in page.query_selector_all("#explain input[name=method]:checked"):
        box.uncheck()
    page.check(f"#explain input[value={method}]")
    assert submit(page, "explain") == "done", page.inner_text("#explain .error")
    assert page.inner_text("#explain .meta").startswith(summary)
    assert page.eval_on_selector_all("#explain .grid figure", "fs => fs.map(f => f.dataset.method)") == [method]
    page.wait_for_function("[...document.querySelectorAll('#explain .grid img')].every(i => i.complete)")
    assert decoded(page, "#explain .grid img")[0] > 0

def test_explain_bad_input_shows_the_field(page, files):
    folder, _ = files
    tab(page, "explain")
    page.select_option("#explain select[name=target]", "caption")
    page.set_input_files("#explain input[name=image]", str(folder / "scene.png"))
    page.fill("#explain input[name=word]", "99")
    page.check("#explain input[value=EXPLAIN_METHOD_GRADIENT]")
    assert submit(page, "explain") == "failed"
    error = page.inner_text("#explain .error")
    assert error.startswith("INVALID_ARGUMENT:") and "word_index" in error and "99" in error, error
    assert page.locator("#explain .grid figure").count() == 0

def test_nothing_left_the_gateway(page):
    assert page.requests_seen and all(url.startswith(page.base) or url.startswith(("data:", "blob:"))
                                      for url in page.requests_seen), page.requests_seen
    # The browser logs each refused call (the error test's 400) as "Failed to load resource"; nothing else.
    assert not [e for e in page.console_errors if "Failed to load resource" not in e], page.console_errors

