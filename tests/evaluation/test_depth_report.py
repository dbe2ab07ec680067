"""The per-depth report's plot names every setting while they are few, and only the
Pareto front when a whole detector's 128 settings are plotted."""
from adadet.evaluation.depth_report import MAX_LABELLED_POINTS, labelled_points, pareto_front


def test_the_pareto_front_keeps_the_points_no_other_beats_on_cost_and_accuracy():
    points = [(10.0, 40.0), (5.0, 30.0), (6.0, 29.0), (8.0, 35.0), (12.0, 39.0)]
    assert sorted(pareto_front(points)) == [0, 1, 3]


def test_few_settings_are_all_labelled_many_only_on_their_front():
    few = [(float(i), float(i % 3)) for i in range(MAX_LABELLED_POINTS)]
    assert labelled_points(few) == list(range(MAX_LABELLED_POINTS))
    many = [(float(i), float(i % 5)) for i in range(128)]  # accuracy repeats, cost grows
    assert labelled_points(many) == sorted(pareto_front(many)) == [0, 1, 2, 3, 4]
