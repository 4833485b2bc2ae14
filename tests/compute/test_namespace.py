from podstack_jupyter.compute.namespace import analyze, shippable


def test_reads_include_globals_used_inside_functions_and_classes():
    names = analyze("def f(q=default):\n    return q + z\nclass C(Base):\n    w = k\n[v for v in items]")
    assert {"default", "z", "Base", "k", "items"} <= names.reads
    assert "v" not in names.binds and "q" not in names.binds


def test_every_kind_of_module_scope_binding():
    code = (
        "import numpy as np, os.path\nfrom json import dumps as d\ny = 1\na, (b, c) = 1, (2, 3)\n"
        "t: int = 3\nz += 1\nfor i in range(3): pass\nwith open('f') as fh: pass\n"
        "def fn():\n    global g\n    g = 1\n    local = 2\nclass K: attr = 1\n"
        "if (w := 5): pass\n[(m := v) for v in range(2)]\n"
        "match y:\n    case [p, *rest]: pass\n    case {'k': q, **others}: pass\n    case other: pass\n"
    )
    names = analyze(code)
    assert names.binds == {"np", "os", "d", "y", "a", "b", "c", "t", "z", "i", "fh", "fn", "g", "K", "w", "m",
                           "p", "rest", "q", "others", "other"}
    assert "local" not in names.binds and "attr" not in names.binds
    assert "z" in names.reads  # augmented assignment reads first


def test_deletes_and_except_names():
    names = analyze("del old\ntry:\n    pass\nexcept ValueError as e:\n    print(e)")
    assert names.deletes == {"old"}
    assert "e" not in names.binds


def test_ipython_bookkeeping_never_ships():
    assert not shippable("_")
    assert not shippable("_i3")
    assert not shippable("Out")
    assert not shippable("get_ipython", hidden={"get_ipython"})
    assert shippable("_private_but_user")
    assert shippable("model")
