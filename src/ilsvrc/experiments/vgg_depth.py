"""VGG's Table 3 as a depth study: configurations A (11 layers) to E (19)
trained alike, their top-1 and top-5 validation error beside the paper's.
The paper's numbers are on ILSVRC-2012's 1000 classes; on other data
(Imagenette) the order of the configurations is what compares."""

from ..figures import bars

LAYERS = {"vgg-a": 11, "vgg-a-lrn": 11, "vgg-b": 13, "vgg-c": 16, "vgg-d": 16, "vgg-e": 19}  # Table 1's column heads


def run(ex) -> dict:
    plan, published = ex.plan, ex.published
    results, a_checkpoint = {}, None
    for name in plan["configurations"]:
        init = {"init_from": str(a_checkpoint)} if name in plan["init_from_a"] and a_checkpoint else {}
        r = ex.train(name, "vgg", model=name, **init)
        results[name] = r["final"]
        if name == "vgg-a":
            a_checkpoint = ex.checkpoint(r)
    rows = [[name, LAYERS[name], results[name]["val_top1_error"], results[name]["val_top5_error"],
             *published.get(name, [None, None])] for name in plan["configurations"]]
    names = plan["configurations"]
    figure = bars(ex.out / "vgg-depth.png", [f"{n[4:].upper()} ({LAYERS[n]})" for n in names], {
        "top-1 error": [results[n]["val_top1_error"] for n in names],
        "top-5 error": [results[n]["val_top5_error"] for n in names],
        "paper top-1": [published.get(n, [None])[0] for n in names]}, ylabel="validation error (%)",
        title="VGG configurations (weight layers)")
    return {
        "tables": [{"title": "Validation error (%) per configuration", "columns": [
            "configuration", "weight layers", "top-1", "top-5", "paper top-1", "paper top-5"], "rows": rows}],
        "figures": [{"file": figure.name, "caption": "Top-1 and top-5 validation error per configuration, with the "
                                                    "paper's top-1 (ILSVRC-2012)"}],
        "notes": [f"the paper's errors are on ILSVRC-2012 (1000 classes, {published['source']}); "
                  "compare the order of the configurations, not the values, on other data"],
    }
