"""make mutants: break the method on purpose, one named way at a time, and check that a test notices.

    .venv/bin/python tests/mutants.py            # exit 1 if any mutant survives

Each mutant replaces one exact piece of code (it must be found exactly once) in a scratch copy of
the tracked files, then runs the tests that guard that invariant; a mutant is killed when they fail.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, file, code, broken code, tests that must fail)
MUTANTS = [
    ("encoder sees every patch", "model.py", "self.encoder(x, ids_keep)", "self.encoder(x)",
     "tests/test_method.py::test_encoder_sees_only_the_visible_patches"),
    ("loss on every patch", "model.py", "return (loss * mask).sum() / mask.sum()",
     "return loss.mean()", "tests/test_pretrain.py::test_loss_is_on_masked_patches_only"),
    ("set_lr ignores lr_scale", "training.py", 'group["lr"] = lr * group["lr_scale"]',
     'group["lr"] = lr', "tests/test_method.py::test_layer_decay_reaches_the_optimizer"),
    ("probe without BatchNorm", "linprobe.py",
     "nn.BatchNorm1d(feats.shape[1], affine=False, eps=1e-6)",
     "nn.Identity()", "tests/test_method.py::test_linear_probe_normalises_its_features"),
    ("probe SGD without momentum, with weight decay", "linprobe.py",
     "momentum=0.9, weight_decay=0.0", "momentum=0.0, weight_decay=0.05",
     "tests/test_method.py::test_linear_probe_uses_sgd_with_momentum_and_no_weight_decay"),
    ("flip never happens", "data.py", "flip = torch.where(u_flip < 0.5, -1.0, 1.0)",
     "flip = torch.ones_like(u_flip)",
     "tests/test_method.py::"
     "test_crop_keeps_20_to_100_percent_of_the_area_and_flips_half_the_images"),
    ("crop area 0.02-1", "data.py", "area = 0.2 + 0.8 * u_area", "area = 0.02 + 0.98 * u_area",
     "tests/test_method.py::"
     "test_crop_keeps_20_to_100_percent_of_the_area_and_flips_half_the_images"),
    ("kNN votes for the least similar", "features.py", ".topk(min(k, len(train_feats)), dim=1)",
     ".topk(min(k, len(train_feats)), dim=1, largest=False)",
     "tests/test_method.py::test_knn_votes_for_the_most_similar_neighbours"),
    ("band rule: bottom takes one component too many", "pca_project.py",
     'return slice(0, k) if target == "bottom"', 'return slice(0, k + 1) if target == "bottom"',
     "tests/test_pca.py::test_bands_partition_and_follow_the_share_rule"),
    ("top band is not the complement of the bottom", "pca_project.py",
     'else slice(k, len(pca["eigvals"]))',
     'else slice(len(pca["eigvals"]) - k, len(pca["eigvals"]))',
     "tests/test_pca.py::test_bands_partition_and_follow_the_share_rule"),
    ("target from the un-augmented batch", "data.py", "return x, pca_project.to_band(x, pcs)",
     "return x, pca_project.to_band(x_uint8.float() / 255, pcs)",
     "tests/test_pretrain.py::test_target_is_the_band_of_the_augmented_batch"),
    ("PCA fitted on train and test", "dataset_pca.py",
     'x = data.images(dataset, images, data_dir, image_size, download)',
     'x = torch.cat([data.load(dataset, s, data_dir, image_size, download)[0] '
     'for s in ("train", "test")])',
     "tests/test_pca.py"),
    ("reported accuracy not the final weights'", "finetune.py",
     'test_accuracy = log[-1]["test_accuracy"]', 'test_accuracy = log[0]["test_accuracy"]',
     "tests/test_eval.py::test_finetune_changes_every_encoder_weight_and_reports_the_final_epoch"),
    ("norm-pix prediction left normalised in the grid", "monitor.py",
     "    if model.norm_pix_loss:\n        tp = model.patchify(target)",
     "    if False:\n        tp = model.patchify(target)",
     "tests/test_method.py::"
     "test_norm_pix_loss_normalises_each_target_patch_and_the_grid_undoes_it"),
    ("smaller side: complement formula flipped", "pca_project.py",
     'return (x.flatten(1) - part if pcs["complement"] else part + pcs["mean"])',
     'return (part + pcs["mean"] if pcs["complement"] else x.flatten(1) - part)',
     "tests/test_pca.py::test_targets_through_the_smaller_side_equal_the_full_projection"),
    ("monitor: largest band left at zero", "monitor.py",
     'sq[pcs["largest"]] = diff.pow(2).sum() - sq.sum()',
     "pass", "tests/test_pca.py::test_targets_through_the_smaller_side_equal_the_full_projection"),
    ("resume forgets the random state", "training.py", 'set_rng_state(ckpt["rng"])', "pass",
     "tests/test_method.py::test_finetune_resume_ends_with_the_same_weights"),
    ("pretraining draws from the global generator", "pretrain.py",
     "g = torch.Generator(device).manual_seed(args.seed * 1_000_003 + step)", "g = None",
     "tests/test_pretrain.py::test_a_step_draws_from_seed_and_step_alone"),
    ("--amp ignored", "training.py",
     'amp = device.type == "cuda" if args.amp is None else args.amp',
     'amp = device.type == "cuda"',
     "tests/test_eval.py::test_amp_pipeline_runs_under_bf16_autocast_on_cpu"),
    ("monitor on the masked patches only", "monitor.py", "        truth = target\n",
     "        _, _, _, pred, m = predict(model, x_uint8, pcs, mask_share, sigma)\n"
     "        truth, given, guess = target, target * (1 - m) + mean * m, "
     "target * (1 - m) + pred * m\n",
     "tests/test_pretrain.py::test_band_monitor_credits_a_guess_with_exactly_the_bands_it_holds"),
    ("norm-pix monitor gives a figure", "monitor.py",
     "    if model.norm_pix_loss:\n        return None", "    if False:\n        return None",
     "tests/test_pretrain.py::test_band_monitor_gives_a_norm_pix_model_no_figure"),
    ("norm-pix trivial guess: the mean image normalised", "pretrain.py",
     "    if not args.norm_pix_loss:\n        return model.patchify(data.mean_image(x_pre)[None])",
     "    if True:\n        m = model.patchify(data.mean_image(x_pre)[None])\n"
     "        return normalize_patches(m) if args.norm_pix_loss else m",
     "tests/test_pretrain.py::test_trivial_guess_is_the_mean_target_patch"),
    ("monitor takes patches the model saw", "monitor.py",
     "take = todo & mask.bool()", "take = todo",
     "tests/test_pretrain.py::test_band_monitor_credits_a_guess_with_exactly_the_bands_it_holds"),
    ("block masking biased by position", "model.py",
     "return blur_on_torus(noise, sigma=g / 5).flatten(1)",
     'return F.interpolate(noise[:, None, ::4, ::4], size=(g, g), mode="bilinear").flatten(1)',
     "tests/test_pretrain.py::test_block_masking_keeps_every_position_equally_often"),
    ("no-pretraining ViT skips MAE's init", "model.py", "        init_weights(self)\n", "\n",
     "tests/test_pretrain.py::test_a_vit_from_scratch_starts_from_the_mae_init"),
    ("wave attention's BatchNorm on masked grids", "pretrain.py",
     'if args.attention == "wave" and args.masking != "pca" and not args.corruption:', "if False:",
     "tests/test_alternatives.py::test_wave_attention_through_pretraining_probe_and_fine_tuning"),
    ("band target under autocast", "pca_project.py",
     "    with exact_float32(x.device.type):\n        part =", "    if True:\n        part =",
     "tests/test_pretrain.py::"
     "test_band_targets_are_exact_float32_under_autocast_and_any_matmul_precision"),
    # issue 23's mechanisms: nothing lost, nothing silently wrong
    ("a held folder not held", "files.py",
     'if key in _HELD or os.environ.get("RANK", "0") != "0":', "if True:",
     "tests/test_round_two.py -k held"),
    ("labels outside the classes accepted", "data.py",
     "if bad := ((y < 0) | (y >= classes)).nonzero()[:1, 0].tolist():",
     "if bad := []:", "tests/test_round_two.py -k cifar_batches"),
    ("a folder's cache blind to its train classes", "data.py",
     'stamp += "/" + "/".join(_folder_classes(data_dir))',
     "pass", "tests/test_round_two.py -k follow_the_train"),
    ("the run's data not in its config", "pretrain.py",
     'cfg["data_sha1"] = data.identity(x_pre, *labelled)', "pass",
     "tests/test_round_two.py -k other_data"),
    ("killed writers' temp files left", "files.py",
     "if m and entry.is_file() and not alive(int(m[1])):", "if False:",
     "tests/test_round_two.py -k temp_files"),
    ("probe chart: the seeds' range not drawn", "report.py",
     "return (min(accuracies), max(accuracies)) if len(accuracies) > 1 else None", "return None",
     "tests/test_eval.py::test_probe_chart_puts_each_copy_at_its_epoch_and_the_table_names_it"),
    ("one initialisation probed in two runs counted as two seeds", "report.py",
     'return (r["pretrain_config"] or {}).get("seed")', "return None",
     "tests/test_eval.py::"
     "test_one_initialisation_probed_in_two_runs_is_one_row_and_one_measurement"),
    ("monitor table: figures of a withdrawn band monitor shown", "report.py",
     'measured = last.get("explained_by") == EXPLAINED_BY and not config.get("norm_pix_loss")',
     'measured = bool(last.get("explained"))',
     "tests/test_eval.py::test_monitor_table_gives_each_runs_last_monitor_line_seeds_gathered"),
    ("epoch table: the gap taken the other way", "report.py",
     "difference = mean(values) - mean(reference_values)",
     "difference = mean(reference_values) - mean(values)",
     "tests/test_eval.py::test_epoch_table_gives_each_targets_gap_to_the_original_at_each_epoch"),
    ("epoch table: the seed spread over n, not n - 1, degrees of freedom", "report.py",
     "freedom = sum(len(values) - 1 for values in cells)",
     "freedom = sum(len(values) for values in cells)",
     "tests/test_eval.py::test_pooled_seed_spread_measures_each_seed_about_its_own_cell"),
    ("epoch table: agreeing seeds' float rounding taken for a spread", "report.py",
     "return spread if spread > 1e-9 else 0.0", "return spread",
     "tests/test_eval.py::"
     "test_epoch_table_gap_in_spreads_from_unrounded_means_and_none_where_seeds_agree"),
    ("epoch table: the initialisations' spread pooled with the trained copies'", "report.py",
     "for epoch, rs in cells.items() if epoch for g", "for epoch, rs in cells.items() for g",
     "tests/test_eval.py::"
     "test_one_initialisation_probed_in_two_runs_is_one_row_and_one_measurement"),
    ("the PCA of the stored images, not of the training views", "dataset_pca.py",
     "pca_project.fit(x, device, views, progress=", "pca_project.fit(x, device, progress=",
     "tests/test_pca.py -k training_inputs"),
    ("a fine-tune's band taken of the augmented image", "finetune.py",
     "x, labels = data.augment(x, args.aug, u_aug), y_train[idx]",
     "x = pca_project.to_band(data.augment(x_train[idx].float() / 255, args.aug, u_aug), pcs)\n"
     "            labels = y_train[idx]",
     "tests/test_eval.py -k band_of_the_whole_image"),
    ("older code's runs read as today's", "older.py",
     "    return {k: OLDER_CODE[name] for k, name in older.items() if name in OLDER_CODE} | cfg",
     "    return cfg", "tests/test_eval.py -k older_code"),
    ("a run older code started resumed as today's", "outfolder.py",
     "    return older | old\n", "    return old\n",
     "tests/test_nothing_lost.py -k older_code"),
    ("an ended fine-tune known by its checkpoint's path", "finetune.py", 'known["ckpt"] = None',
     "pass", "tests/test_nothing_lost.py -k without_its_checkpoints"),
    ("the walker follows a loop", "files.py", "if (st.st_dev, st.st_ino) in folders:", "if False:",
     "tests/test_round_three.py::"
     "test_the_walker_yields_each_real_file_once_breaks_loops_and_names_what_is_no_file"),
    ("the walker yields a file twice", "files.py",
     "if (st.st_dev, st.st_ino) not in seen:", "if True:",
     "tests/test_round_three.py::"
     "test_the_walker_yields_each_real_file_once_breaks_loops_and_names_what_is_no_file"),
    ("the opener opens a folder", "files.py", "if stat.S_ISDIR(mode):", "if False:",
     "tests/test_round_three.py::"
     "test_the_opener_names_a_folder_a_pipe_and_a_dead_link_in_one_line"),
    ("an empty path names the current folder", "cli.py", "if not text:", "if False:",
     "tests/test_round_three.py::"
     "test_a_lock_that_is_a_folder_and_odd_names_are_one_line_and_leave_nothing"),
    ("a batch without an upper end", "cli.py", "batch = within(1, 2**20, high_in=True, kind=int)",
     "batch = within(1, math.inf, kind=int)",
     "tests/test_round_three.py::"
     "test_every_number_past_what_the_code_honours_is_refused_by_its_flag_before_any_data"),
    ("export writes over its input", "outfolder.py",
     "if any(same(i) for i in inputs):", "if False:",
     "tests/test_round_three.py::test_export_never_writes_over_its_input_or_a_file_of_a_run"),
    ("a script writes into another script's run", "outfolder.py",
     "if holder not in (None, script):", "if False:",
     "tests/test_round_three.py::"
     "test_no_script_writes_into_another_scripts_run_and_says_so_before_any_data"),
    ("mid-epoch weights called untrained", "report.py",
     'if r.get("pretrain_epoch") == 0 and not r.get("pretrain_step"):',
     'if r.get("pretrain_epoch") == 0:',
     "tests/test_round_three.py::"
     "test_weights_of_a_stop_mid_epoch_are_reported_with_their_steps_never_as_untrained"),
    ("summary.json before the charts", "pretrain.py",
     'report.curves_chart(log, os.path.join(args.out, "curves.svg"), band_desc, cfg)',
     'files.save_json(summary, os.path.join(args.out, "summary.json")); '
     'report.curves_chart(log, os.path.join(args.out, "curves.svg"), band_desc, cfg)',
     "tests/test_round_three.py::test_a_run_is_ended_only_once_everything_it_writes_is_written"),
    ("results.json figures out of range", "report.py",
     "within = all(r.get(k) is None or number_within(r[k], low, high)",
     "within = True or all(r.get(k) is None or number_within(r[k], low, high)",
     "tests/test_round_three.py::"
     "test_a_results_json_with_a_figure_out_of_its_range_is_no_results_json"),
    ("a contradicting flag silently overridden", "checkpoints.py",
     "if given is not None and given != value:", "if False:",
     "tests/test_round_three.py::"
     "test_a_flag_the_checkpoint_overrides_is_refused_where_it_contradicts_it"),
    ("a lock file left behind", "files.py", "        if made:\n", "        if False:\n",
     "tests/test_round_three.py::test_resume_of_a_folder_that_holds_no_run_says_so"),
    ("a chart point counting a repeated probe twice", "report.py",
     'points = {name: {e: measurements(rs, "accuracy")',
     'points = {name: {e: [r["accuracy"] for r in rs]',
     "tests/test_eval.py::test_probe_chart_gathers_as_the_tables_do"),
    ("a bf16 probe gathered as a seed of an fp32 one", "report.py",
     '    if r.get("precision") is None:\n        return config', "    if True:\n        return config",
     "tests/test_eval.py::test_results_computed_in_other_precisions_are_told_apart"),
    ("a bf16 pretraining gathered as a seed of an fp32 one", "report.py",
     'config |= {"pretrain.precision": r["pretrain_precision"]}', "pass",
     "tests/test_eval.py::test_pretrainings_in_other_precisions_are_told_apart"),
    ("a kept copy without the log of its epochs", "training.py",
     '"log": list(log)}, path)', '"log": []}, path)',
     "tests/test_eval.py::test_kept_copies_are_the_weights_of_their_epoch_and_probed_as_such"),
    ("the monitor's PCA setting apart runs that trained alike", "report.py",
     'pca_read = target and (c.get("target") != "original" or c.get("masking") == "pca")',
     "pca_read = True",
     "tests/test_eval.py::test_which_pca_only_the_monitor_read_sets_no_run_apart"),
    ("an unrecorded precision filled in from another target's results", "report.py",
     'if o.get("target") == item.get("target")', "if True",
     "tests/test_eval.py::test_pretrainings_in_other_precisions_are_told_apart"),
    ("study3 fine-tunes no pretraining for 50 epochs after the wrong arm", "Makefile",
     '"original --norm-pix-loss:1")', '"original --norm-pix-loss:0")',
     "tests/test_make.py::test_study3_runs_the_issues_arms_in_order_and_fine_tunes_no_pretraining"
     "_for_50_epochs_once"),
    ("each target's own seed spread is the pooled one", "report.py",
     'spread("accuracy", targets={t: gs})', 'spread("accuracy", targets=groups)',
     "tests/test_eval.py::test_epoch_table_gap_in_spreads_from_unrounded_means_and_none_where_seeds"
     "_agree"),
]


def main():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    survived = []
    with tempfile.TemporaryDirectory() as scratch:
        for path in files:
            os.makedirs(os.path.join(scratch, os.path.dirname(path)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, path), os.path.join(scratch, path))
        for name, path, code, broken, tests in MUTANTS:
            with open(os.path.join(scratch, path)) as f:
                original = f.read()
            if original.count(code) != 1:
                sys.exit(f"error: mutant {name!r}: the code to break is not found exactly once "
                         f"in {path}")
            with open(os.path.join(scratch, path), "w") as f:
                f.write(original.replace(code, broken))
            t0 = time.time()
            p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p",
                                "no:cacheprovider", *tests.split()],
                               cwd=scratch, capture_output=True, text=True)
            with open(os.path.join(scratch, path), "w") as f:
                f.write(original)
            print(f"{'killed  ' if p.returncode == 1 else 'SURVIVED'} {name} "
                  f"({time.time() - t0:.0f} s)", flush=True)
            if p.returncode != 1:  # 1: tests failed; 0: passed; anything else: they could not run
                survived.append(name)
    print(f"{len(MUTANTS) - len(survived)} of {len(MUTANTS)} mutants killed"
          + (f"; survived: {', '.join(survived)}" if survived else ""))
    sys.exit(1 if survived else 0)


if __name__ == "__main__":
    main()
