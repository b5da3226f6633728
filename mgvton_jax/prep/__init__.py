"""Your own photos: check try-on inputs, convert what can be converted, write pair lists.

    python -m mgvton_jax.prep check --person P.jpg --person-parsing P.png \
        --keypoints P_keypoints.json [--clothes C.jpg [--clothes-mask M.png]]
    python -m mgvton_jax.prep check --dir DATA_DIR [--pair-list LIST]
    python -m mgvton_jax.prep parsing-colours IN.png OUT.png [--palette lip|pascal]
    python -m mgvton_jax.prep body25 IN_keypoints.json OUT_keypoints.json
    python -m mgvton_jax.prep rescale-keypoints IN.json OUT.json --from WxH --to WxH
    python -m mgvton_jax.prep clothes-mask C.jpg OUT_mask.png
    python -m mgvton_jax.prep make-pairs DIR [--split test] [--out DIR/data_pair.txt]

`checks` finds the problems (`Problem`: the file, what is wrong and what was expected, the
command that fixes it, and whether the input is usable as it is); `converters` writes fixed
copies (never over their input); `make_pairs` writes an MPV pair list for a folder of one's own
triplets, so that it goes through the data set builder like MPV.
"""
