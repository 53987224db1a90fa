"""Training end to end on a tiny synthetic dataset: train, resume, export a bundle, evaluate it.

Needs the optional ``training`` extra (torch); skipped without it.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vessel_seg.camera.synthetic import make_fundus  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_dataset")
    for sub in ("images", "labels", "fov"):
        (root / sub).mkdir()
    for i in range(4):
        rgb, vessels, fov = make_fundus(300, 280, seed=10 + i)
        cv2.imwrite(str(root / "images" / ("%02d.png" % i)), rgb[:, :, ::-1])
        cv2.imwrite(str(root / "labels" / ("%02d.png" % i)), vessels.astype(np.uint8) * 255)
        cv2.imwrite(str(root / "fov" / ("%02d.png" % i)), fov.astype(np.uint8) * 255)
    return root


def _ckpt(path: Path) -> dict:
    return torch.load(str(path), map_location="cpu", weights_only=False)


def _train(dataset: Path, run: Path, *extra: str) -> int:
    from training.train import main

    return main(["--data", str(dataset), "--images", "images", "--labels", "labels", "--fov", "fov",
                 "--run", str(run), "--channels", "4,8", "--patch", "64", "--batch", "2", "--val-count", "1",
                 "--threads", "1", "--val-every-s", "0", *extra])


def test_training_resumes_where_it_stopped_and_exports_a_bundle_the_simulator_runs(dataset, tmp_path):
    run = tmp_path / "run"
    assert _train(dataset, run, "--max-steps", "3") == 0
    first = _ckpt(run / "last.pt")
    assert first["step"] == 3
    assert _train(dataset, run, "--resume", "--max-steps", "5") == 0
    second = _ckpt(run / "last.pt")
    assert second["step"] == 5 and len(second["history"]) > len(first["history"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_images"] == ["03"] and "03" not in summary["train_images"]
    assert 0.0 <= summary["validation"]["auc"] <= 1.0

    from training.export import main as export_main

    bundle_dir = tmp_path / "models" / "tiny"
    assert export_main(["--checkpoint", str(run / "best.pt"), "--out", str(bundle_dir)]) == 0
    from vessel_seg.device import load_bundle

    bundle = load_bundle(str(bundle_dir))
    assert bundle.aipp is not None and bundle.meta["parameters"] > 0

    from vessel_seg.pipeline.cli.evaluate import evaluate

    res = evaluate(dataset, bundle_dir, precision="fp32", images="images", labels="labels", fov="fov")
    assert res["images"] == 4 and 0.0 <= res["summary"]["pooled_auc"] <= 1.0


def test_the_reference_architecture_has_the_published_size():
    from training.models import build_model, count_macs, count_parameters_deployed

    ref = build_model("reference")
    assert 27000 < count_parameters_deployed(ref) < 29000
    assert 7.2e9 < count_macs(ref) < 7.6e9


@pytest.mark.parametrize("arch, kwargs", [("unet", {"channels": (4, 8, 8)}), ("wnet", {"channels": (4, 8)}),
                                          ("reference", {}), ("unet", {"channels": (4, 8), "in_ch": 3}),
                                          ("wnet", {"channels": (4, 8), "in_ch": 3})])
def test_the_exported_graph_computes_what_the_trained_network_computes_on_the_rgb_input(arch, kwargs):
    from training.export import check_onnx_matches_torch
    from training.models import build_model, export_graph
    from vessel_seg.device.onnx_proto import encode_model

    torch.manual_seed(0)
    net = build_model(arch, **kwargs)
    for m in net.modules():                       # batch-norm statistics that folding has to get right
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    # cv2.dnn on the exported graph against torch, fed as AIPP delivers: gray as R = G = B, colour as it is
    onnx_bytes = encode_model(export_graph(net, size=64))
    assert check_onnx_matches_torch(net, onnx_bytes, size=64) < 1e-4


def test_a_wnet_is_two_unets_within_the_parameter_and_mac_budget_and_trains_end_to_end(dataset, tmp_path):
    from training.models import build_model, count_macs, count_parameters_deployed

    wnet = build_model("wnet", channels=(8, 16, 32))
    unet = build_model("unet", channels=(8, 16, 32))
    # the second U-Net's first layer also reads the first one's probability: 8 filters x 3x3 more weights
    assert count_parameters_deployed(wnet) == 2 * count_parameters_deployed(unet) + 8 * 9
    assert count_parameters_deployed(wnet) <= 100000 and count_macs(wnet) <= 4e9
    run = tmp_path / "wnet"
    assert _train(dataset, run, "--arch", "wnet", "--max-steps", "2") == 0
    ckpt = _ckpt(run / "last.pt")
    assert ckpt["arch"] == "wnet" and ckpt["arch_kwargs"] == {"channels": (4, 8)}
    torch.manual_seed(0)                          # the run's seed: the weights it started from
    initial = build_model("wnet", channels=(4, 8)).state_dict()
    for stage in ("first", "second"):
        name = stage + ".enc.0.0.0.weight"
        assert not torch.equal(ckpt["model"][name], initial[name])


def test_a_colour_run_learns_from_the_nv12_round_trip_and_its_bundle_asks_the_pipeline_for_colour(dataset,
                                                                                                tmp_path):
    import yaml

    from training.export import main as export_main
    from vessel_seg.pipeline.cli.evaluate import evaluate

    run = tmp_path / "colour"
    assert _train(dataset, run, "--colour", "--max-steps", "2") == 0
    ckpt = _ckpt(run / "last.pt")
    assert ckpt["preprocess"]["colour"] is True and ckpt["arch_kwargs"]["in_ch"] == 3
    assert _train(dataset, run, "--resume", "--max-steps", "3") == 0      # resuming keeps it a colour run
    assert _ckpt(run / "last.pt")["step"] == 3
    out = tmp_path / "models" / "colour"
    assert export_main(["--checkpoint", str(run / "last.pt"), "--out", str(out)]) == 0
    meta = yaml.safe_load((out / "model.yaml").read_text())
    assert meta["preprocess"]["colour"] is True and " --colour" in meta["provenance"]["command"]
    res = evaluate(dataset, out, precision="fp16", images="images", labels="labels", fov="fov")
    assert res["images"] == 4 and 0.0 <= res["summary"]["pooled_auc"] <= 1.0

    # what training fed the network is what the appliance feeds it: pipeline + simulated AIPP == torch
    from training.models import network_from_checkpoint
    from training.train import network_input, predict512
    from vessel_seg.device import load_bundle, open_session
    from vessel_seg.pipeline.engine.stages import ModelInfo, Stages, StageSettings, WorkItem

    net = network_from_checkpoint(_ckpt(run / "last.pt"))
    bundle = load_bundle(str(out))
    image = sorted((dataset / "images").iterdir())[0]
    with open_session(bundle, runtime="sim", sim_options={"precision": "fp32"}) as sess:
        stages = Stages(ModelInfo.from_bundle(bundle, runtime=sess.runtime_name, precision="fp32"),
                        StageSettings(max_pixels=10 ** 8, max_bytes=1 << 30), tmp_path, name_by="stem")
        job = stages.prepare(WorkItem(id="x", sha256="", source=image.name, path=image))
        sess.write_input(0, job.model_input)
        sess.execute(0)
        deployed = sess.read_output(0).reshape(512, 512)
    trained = predict512(net, network_input(job.pre.model_rgb, colour=True), torch.device("cpu"))
    assert np.abs(deployed - trained).max() < 1e-4


def test_a_fine_tuning_run_starts_from_another_runs_weights_with_its_own_loss_and_schedule(dataset, tmp_path):
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert _train(dataset, base, "--max-steps", "3", "--channels", "4,8,8") == 0
    assert _train(dataset, tuned, "--init", str(base / "best.pt"), "--loss", "bce", "--max-steps", "2") == 0
    start = _ckpt(base / "best.pt")
    ckpt = _ckpt(tuned / "last.pt")
    assert ckpt["step"] == 2 and ckpt["arch_kwargs"] == {"channels": (4, 8, 8)}   # architecture from --init
    assert set(ckpt["model"]) == set(start["model"])
    summary = json.loads((tuned / "summary.json").read_text())
    assert summary["loss"] == "bce" and summary["init"] == str(base / "best.pt")


def test_a_resumed_run_keeps_its_own_time_budget_unless_a_new_one_is_given(dataset, tmp_path):
    run = tmp_path / "run"
    assert _train(dataset, run, "--max-steps", "2", "--budget-min", "100") == 0
    state = _ckpt(run / "last.pt")
    state["elapsed"] = 50 * 60.0          # past the 45-minute default, well inside the run's 100 minutes
    torch.save(state, str(run / "last.pt"))
    assert _train(dataset, run, "--resume", "--max-steps", "4") == 0
    resumed = _ckpt(run / "last.pt")
    assert resumed["step"] == 4 and resumed["args"]["budget_min"] == 100
    assert _train(dataset, run, "--resume", "--max-steps", "6", "--budget-min", "40") == 0   # 40 min: already spent
    stopped = _ckpt(run / "last.pt")
    assert stopped["step"] == 4 and stopped["args"]["budget_min"] == 40


def test_resuming_from_a_last_checkpoint_older_than_the_best_one_keeps_the_best_one(dataset, tmp_path):
    run = tmp_path / "run"
    assert _train(dataset, run, "--max-steps", "3") == 0
    best = _ckpt(run / "best.pt")
    best["best_auc"] = 2.0                # a best checkpoint no later validation can beat
    torch.save(best, str(run / "best.pt"))
    last = _ckpt(run / "last.pt")
    last["best_auc"] = -1.0               # saved before that best one was found
    torch.save(last, str(run / "last.pt"))
    assert _train(dataset, run, "--resume", "--max-steps", "4") == 0
    kept = _ckpt(run / "best.pt")
    assert kept["best_auc"] == 2.0 and kept["step"] == best["step"]


def test_with_ema_the_checkpoint_holds_the_averaged_weights_and_resumes_the_raw_ones(dataset, tmp_path):
    run = tmp_path / "ema"
    assert _train(dataset, run, "--max-steps", "3", "--ema", "0.5") == 0
    ckpt = _ckpt(run / "last.pt")
    raw, avg = ckpt["train_model"], ckpt["model"]
    assert set(raw) == set(avg)
    assert any(not torch.equal(raw[k], avg[k]) for k in raw if raw[k].dtype.is_floating_point)
    assert _train(dataset, run, "--resume", "--max-steps", "4") == 0
    resumed = _ckpt(run / "last.pt")
    assert resumed["step"] == 4 and resumed["args"]["ema"] == 0.5


def test_a_final_fit_on_all_images_is_exported_with_its_twins_last_step_validation(dataset, tmp_path):
    import yaml

    from training.export import main as export_main
    from training.validate import main as validate_main

    twin, final = tmp_path / "twin", tmp_path / "final"
    assert _train(dataset, twin, "--max-steps", "2") == 0
    assert _train(dataset, final, "--init", str(twin / "best.pt"), "--val-count", "0", "--max-steps", "2") == 0
    assert json.loads((final / "summary.json").read_text())["val_images"] == []
    assert validate_main(["--checkpoint", str(final / "last.pt")]) == 2          # nothing held out
    out = tmp_path / "models" / "fit"
    assert export_main(["--checkpoint", str(final / "last.pt"), "--out", str(out),
                        "--validation-from", str(twin / "summary.json")]) == 2   # not validated yet
    assert validate_main(["--checkpoint", str(twin / "last.pt")]) == 0
    last = json.loads((twin / "summary.json").read_text())["validation_last"]
    assert last["step"] == 2
    assert export_main(["--checkpoint", str(final / "last.pt"), "--out", str(out),
                        "--validation-from", str(twin / "summary.json")]) == 0
    meta = yaml.safe_load((out / "model.yaml").read_text())
    assert meta["threshold"] == round(last["threshold"], 4)
    assert [st["run"] for st in meta["provenance"]["stages"]] == ["twin", "final"]
    assert "twin run twin" in meta["provenance"]["validation_source"]
    assert "none held out" in meta["provenance"]["dataset"]


def test_the_recorded_command_names_every_option_that_changes_what_is_learned():
    from training.export import command_line
    from training.train import parse_args

    args = vars(parse_args(["--run", "r", "--data", "d", "--channels", "12,16,32,40", "--aug-prob", "0.5",
                            "--threads", "1"]))
    command = command_line(args)
    assert "--channels 12,16,32,40" in command and "--aug-prob 0.5" in command
    assert "--threads" not in command and "--warmup" not in command   # not a result option / at its default
    assert "--arch unet" in command and "--recipe ours" in command and "--seed 0" in command   # always shown


def test_the_fov_margin_and_the_rotation_and_zoom_are_kept_on_resume_and_recorded_in_the_bundle(dataset, tmp_path):
    import yaml

    from training.export import main as export_main

    run = tmp_path / "tight"
    assert _train(dataset, run, "--fov-margin", "0", "--rotate", "20", "--scale-jitter", "0.05",
                  "--max-steps", "2") == 0
    assert _train(dataset, run, "--resume", "--max-steps", "3") == 0
    ckpt = _ckpt(run / "last.pt")
    assert ckpt["step"] == 3 and ckpt["preprocess"]["fov_margin"] == 0.0
    assert ckpt["args"]["rotate"] == 20.0 and ckpt["args"]["scale_jitter"] == 0.05
    out = tmp_path / "models" / "tight"
    assert export_main(["--checkpoint", str(run / "last.pt"), "--out", str(out)]) == 0
    meta = yaml.safe_load((out / "model.yaml").read_text())
    command = meta["provenance"]["command"]
    assert meta["preprocess"]["fov_margin"] == 0.0 and " --fov-margin 0.0" in command
    assert " --rotate 20.0" in command and " --scale-jitter 0.05" in command


def test_an_ensemble_averages_twins_held_out_on_the_same_images_and_refuses_others(dataset, tmp_path):
    from training.validate import main as validate_main
    from training.validate import validate_checkpoint, validate_ensemble

    a, b, other = tmp_path / "a", tmp_path / "b", tmp_path / "other"
    assert _train(dataset, a, "--max-steps", "2") == 0
    assert _train(dataset, b, "--max-steps", "2", "--seed", "1") == 0
    assert _train(dataset, other, "--max-steps", "1", "--val-count", "2") == 0
    single = validate_checkpoint(a / "last.pt")
    with_itself = validate_ensemble([a / "last.pt", a / "last.pt"])
    assert with_itself["ensemble"]["auc"] == pytest.approx(single["auc"], abs=1e-9)
    pair = validate_ensemble([a / "last.pt", b / "last.pt"])
    assert set(pair["members"]) == {str(a / "last.pt"), str(b / "last.pt")}
    assert 0.0 <= pair["ensemble"]["auc"] <= 1.0 and pair["members"][str(a / "last.pt")] == single["auc"]
    assert validate_main(["--checkpoint", str(a / "last.pt"), "--ensemble", str(other / "last.pt")]) == 2
    summary = json.loads((a / "summary.json").read_text())
    assert validate_main(["--checkpoint", str(a / "last.pt"), "--ensemble", str(b / "last.pt")]) == 0
    assert json.loads((a / "summary.json").read_text()) == summary      # an ensemble records nothing


def test_flipped_passes_average_the_network_over_mirrored_inputs_and_record_nothing(dataset, tmp_path):
    from training.models import network_from_checkpoint
    from training.train import predict512
    from training.validate import main as validate_main

    run = tmp_path / "run"
    assert _train(dataset, run, "--max-steps", "2") == 0
    model = network_from_checkpoint(_ckpt(run / "last.pt"))
    cpu = torch.device("cpu")
    x = np.random.RandomState(0).randint(0, 256, (64, 64)).astype(np.uint8)

    def mirrored(rows: slice, cols: slice) -> np.ndarray:
        return predict512(model, np.ascontiguousarray(x[rows, cols]), cpu)[rows, cols]

    keep, flip = slice(None), slice(None, None, -1)
    plain, left_right = mirrored(keep, keep), mirrored(keep, flip)
    up_down, both = mirrored(flip, keep), mirrored(flip, flip)
    assert not np.allclose(plain, left_right, atol=1e-4)        # the untrained network is not symmetric
    assert np.allclose(predict512(model, x, cpu, flips=2), (plain + left_right) / 2, atol=1e-6)
    assert np.allclose(predict512(model, x, cpu, flips=4), (plain + left_right + up_down + both) / 4, atol=1e-6)

    summary = json.loads((run / "summary.json").read_text())
    assert validate_main(["--checkpoint", str(run / "last.pt"), "--flips", "4"]) == 0
    assert json.loads((run / "summary.json").read_text()) == summary      # not what the appliance runs
    with pytest.raises(SystemExit):
        validate_main(["--checkpoint", str(run / "last.pt"), "--flips", "3"])


def _synthetic_root(root: Path, n: int, seed: int, size=(300, 280)) -> Path:
    for sub in ("images", "labels", "fov"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        rgb, vessels, fov = make_fundus(size[0], size[1], seed=seed + i)
        cv2.imwrite(str(root / "images" / ("%02d.png" % i)), rgb[:, :, ::-1])
        cv2.imwrite(str(root / "labels" / ("%02d.png" % i)), vessels.astype(np.uint8) * 255)
        cv2.imwrite(str(root / "fov" / ("%02d.png" % i)), fov.astype(np.uint8) * 255)
    return root


def test_a_run_trains_on_several_datasets_with_shares_and_holds_out_images_of_each(dataset, tmp_path):
    import yaml

    from training.export import main as export_main
    from training.validate import main as validate_main

    other = _synthetic_root(tmp_path / "OTHER", 3, seed=40, size=(360, 330))
    run = tmp_path / "run"
    assert _train(dataset, run, "--data", str(other), "--shares", "3,1", "--max-steps", "3") == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_images"] == ["%s/03" % dataset.name, "OTHER/02"]
    assert summary["train_images"] == ["%s/%02d" % (dataset.name, i) for i in range(3)] + ["OTHER/00", "OTHER/01"]
    assert _ckpt(run / "last.pt")["args"]["data"] == [str(dataset), str(other)]
    assert validate_main(["--checkpoint", str(run / "last.pt")]) == 0        # finds both roots' held-out images

    out = tmp_path / "models" / "multi"
    assert export_main(["--checkpoint", str(run / "best.pt"), "--out", str(out)]) == 0
    meta = yaml.safe_load((out / "model.yaml").read_text())
    provenance = meta["provenance"]["dataset"]
    assert "%s + OTHER" % dataset.name in provenance and "shares 3,1" in provenance
    assert "--shares 3,1" in meta["provenance"]["command"]


def test_shares_must_match_the_roots_and_be_positive(dataset, tmp_path):
    assert _train(dataset, tmp_path / "a", "--data", str(dataset), "--shares", "1", "--max-steps", "1") == 2
    assert _train(dataset, tmp_path / "b", "--shares", "-1", "--max-steps", "1") == 2


def test_the_sampler_draws_roots_by_share_and_a_single_root_draws_as_before():
    from training.data import RootSampler

    sampler = RootSampler([["a0", "a1"], ["b0"]], [0.75, 0.25])
    draws = [sampler.draw(np.random.default_rng(s)) for s in range(2000)]
    assert 0.70 < sum(d.startswith("a") for d in draws) / 2000.0 < 0.80
    single = RootSampler([list(range(7))], [1.0])
    rng, ref = np.random.default_rng(5), np.random.default_rng(5)
    assert [single.draw(rng) for _ in range(20)] == [int(ref.integers(7)) for _ in range(20)]
