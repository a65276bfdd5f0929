"""Claims of lesson 03 that its own run does not check (docs/claims/03_playground.yml)."""

import numpy as np

from course_utils.foundations.playground import PlaygroundConfig, train_playground


def test_noise_and_few_training_points_make_the_test_loss_rise():
    """Exercise 5: noise 50 %, train ratio 10 %, hidden 8,8,8 on the app's first data set
    (the circle, the full profile's app settings): the test loss climbs back up from its
    minimum while the training loss keeps falling, i.e. the network learns the noise."""
    result = train_playground(PlaygroundConfig(noise=0.5, train_ratio=0.1, hidden=(8, 8, 8),
                                               n_points=500, batch_size=10, num_epochs=40))
    test, train = np.array(result.test_loss), np.array(result.train_loss)
    best = int(test.argmin())
    assert best < len(test) - 1 and test[-1] > 1.5 * test[best], test  # the test loss rose
    assert train[-1] < 0.5 * train[best], train  # ... while the training loss fell
