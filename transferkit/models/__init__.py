"""Model families; importing this package registers every one of them.

One module per family, each with its spec table, its one block function and its registrations.
"""

from transferkit.models import mobilenet  # noqa: F401
from transferkit.models import efficientnet  # noqa: F401
from transferkit.models import googlenet  # noqa: F401
from transferkit.models import resnet  # noqa: F401
from transferkit.models import lenet  # noqa: F401
from transferkit.models import alexnet  # noqa: F401
from transferkit.models import vgg  # noqa: F401
from transferkit.models import wide_resnet  # noqa: F401
from transferkit.models import densenet  # noqa: F401
